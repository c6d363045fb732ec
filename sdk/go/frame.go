// Package gregormq is a client for the GregorMQ message broker: frames and record batches of its
// wire protocol (docs/protocol.md), a pipelining idempotent producer, credit-based subscriptions
// with acknowledgements and durable names, and topic administration.
package gregormq

import (
	"encoding/binary"
	"hash/crc32"
	"io"
)

// Frame header constants (docs/protocol.md §3).
const (
	Magic                       = 0x474d
	ProtocolVersion             = 1
	HeaderBytes                 = 20
	FramePayloadBytesMaxDefault = 16 * 1024 * 1024
)

// Header flags (§3.1).
const (
	FlagResponse = 0x01
	FlagError    = 0x02
	FlagPush     = 0x04
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CRC32C is the CRC-32C (Castagnoli) checksum both frame headers and batches carry.
func CRC32C(b []byte) uint32 { return crc32.Checksum(b, castagnoli) }

// Frame is one decoded frame.
type Frame struct {
	Version       uint8
	Flags         uint8
	Opcode        uint16
	CorrelationID uint32
	Payload       []byte
}

// AppendFrame appends the encoding of a frame with this payload to dst.
func AppendFrame(dst []byte, opcode uint16, correlationID uint32, flags uint8, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, HeaderBytes)...)
	putHeader(dst[start:], opcode, correlationID, flags, len(payload))
	return append(dst, payload...)
}

func putHeader(h []byte, opcode uint16, correlationID uint32, flags uint8, payloadLen int) {
	binary.BigEndian.PutUint16(h[0:], Magic)
	h[2] = ProtocolVersion
	h[3] = flags
	binary.BigEndian.PutUint16(h[4:], opcode)
	binary.BigEndian.PutUint16(h[6:], 0)
	binary.BigEndian.PutUint32(h[8:], correlationID)
	binary.BigEndian.PutUint32(h[12:], uint32(payloadLen))
	binary.BigEndian.PutUint32(h[16:], CRC32C(h[:16]))
}

// parseHeader checks a 20-byte header in the order §3.3 gives and returns the payload length.
func parseHeader(h []byte, payloadBytesMax int) (Frame, int, error) {
	if binary.BigEndian.Uint16(h[0:]) != Magic {
		return Frame{}, 0, malformed("frame magic is 0x%04x, not 0x474d", binary.BigEndian.Uint16(h[0:]))
	}
	if got, want := binary.BigEndian.Uint32(h[16:]), CRC32C(h[:16]); got != want {
		return Frame{}, 0, malformed("frame header checksum 0x%08x does not match 0x%08x", got, want)
	}
	if h[2] != ProtocolVersion {
		return Frame{}, 0, &Error{Code: CodeUnsupportedVersion, Message: "frame version is not 1"}
	}
	if binary.BigEndian.Uint16(h[6:]) != 0 {
		return Frame{}, 0, malformed("frame reserved bytes are not zero")
	}
	n := binary.BigEndian.Uint32(h[12:])
	if uint64(n) > uint64(payloadBytesMax) {
		return Frame{}, 0, &Error{Code: CodeFrameTooLarge,
			Message: "frame payload of " + itoa(int64(n)) + " bytes is over " + itoa(int64(payloadBytesMax))}
	}
	f := Frame{Version: h[2], Flags: h[3], Opcode: binary.BigEndian.Uint16(h[4:]),
		CorrelationID: binary.BigEndian.Uint32(h[8:])}
	return f, int(n), nil
}

// DecodeFrame decodes one whole frame that is exactly b.
func DecodeFrame(b []byte, payloadBytesMax int) (Frame, error) {
	if len(b) < HeaderBytes {
		return Frame{}, malformed("frame of %d bytes is shorter than its 20-byte header", len(b))
	}
	f, n, err := parseHeader(b[:HeaderBytes], payloadBytesMax)
	if err != nil {
		return Frame{}, err
	}
	if len(b)-HeaderBytes != n {
		return Frame{}, malformed("frame says %d payload bytes but %d follow", n, len(b)-HeaderBytes)
	}
	f.Payload = b[HeaderBytes:]
	return f, nil
}

// ReadFrame reads one frame from r; it refuses a payload over payloadBytesMax before reading it.
func ReadFrame(r io.Reader, payloadBytesMax int) (Frame, error) {
	var h [HeaderBytes]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	f, n, err := parseHeader(h[:], payloadBytesMax)
	if err != nil {
		return Frame{}, err
	}
	f.Payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.Payload); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return f, nil
}
