package gregormq

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Codec is a record batch compression codec (docs/protocol.md §7.5).
type Codec uint8

// The codecs, numbered as on the wire.
const (
	CodecNone   Codec = 0
	CodecGzip   Codec = 1
	CodecSnappy Codec = 2
	CodecLZ4    Codec = 3
	CodecZstd   Codec = 4
)

var codecNames = [...]string{"none", "gzip", "snappy", "lz4", "zstd"}

func (c Codec) String() string {
	if int(c) < len(codecNames) {
		return codecNames[c]
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// CodecByName returns the codec with the given name ("none", "gzip", "snappy", "lz4", "zstd").
func CodecByName(name string) (Codec, bool) {
	for i, n := range codecNames {
		if n == name {
			return Codec(i), true
		}
	}
	return 0, false
}

var (
	zstdOnce sync.Once
	zstdEnc  *zstd.Encoder
	zstdDec  *zstd.Decoder
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder) {
	zstdOnce.Do(func() {
		zstdEnc, _ = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		zstdDec, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
	})
	return zstdEnc, zstdDec
}

// compress packs a batch's records section with codec c in the form §7.5 gives.
func compress(c Codec, src []byte) ([]byte, error) {
	switch c {
	case CodecNone:
		return src, nil
	case CodecGzip:
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		if _, err := w.Write(src); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case CodecSnappy:
		// One raw Snappy block, not Kafka's xerial framing.
		return s2.EncodeSnappy(nil, src), nil
	case CodecLZ4:
		// lz4-wasm's form: a 4-byte little-endian uncompressed length, then one raw LZ4 block.
		out := make([]byte, 4+lz4.CompressBlockBound(len(src)))
		binary.LittleEndian.PutUint32(out, uint32(len(src)))
		n, err := lz4.CompressBlock(src, out[4:], nil)
		if err != nil {
			return nil, err
		}
		if n == 0 && len(src) > 0 {
			return nil, fmt.Errorf("gregormq: lz4 could not compress %d bytes", len(src))
		}
		return out[:4+n], nil
	case CodecZstd:
		enc, _ := zstdCodecs()
		return enc.EncodeAll(src, nil), nil
	}
	return nil, fmt.Errorf("gregormq: cannot compress with codec %d: not a known codec", c)
}

// decompress unpacks a records section, refusing output over outMax bytes before producing it
// where the format declares its length.
func decompress(c Codec, src []byte, outMax int) ([]byte, error) {
	switch c {
	case CodecNone:
		if len(src) > outMax {
			return nil, corrupt("records of %d bytes are over %d", len(src), outMax)
		}
		return src, nil
	case CodecGzip:
		r, err := gzip.NewReader(bytes.NewReader(src))
		if err != nil {
			return nil, corrupt("cannot decompress gzip: %v", err)
		}
		out, err := io.ReadAll(io.LimitReader(r, int64(outMax)+1))
		if err != nil {
			return nil, corrupt("cannot decompress gzip: %v", err)
		}
		if len(out) > outMax {
			return nil, corrupt("cannot decompress gzip: output is over the limit of %d bytes", outMax)
		}
		return out, nil
	case CodecSnappy:
		n, err := s2.DecodedLen(src)
		if err != nil {
			return nil, corrupt("cannot decompress snappy: %v", err)
		}
		if n > outMax {
			return nil, corrupt("cannot decompress snappy: output of %d bytes is over the limit of %d", n, outMax)
		}
		out, err := s2.Decode(nil, src)
		if err != nil {
			return nil, corrupt("cannot decompress snappy: %v", err)
		}
		return out, nil
	case CodecLZ4:
		if len(src) < 4 {
			return nil, corrupt("cannot decompress lz4: the 4-byte length is cut off")
		}
		n := binary.LittleEndian.Uint32(src)
		if uint64(n) > uint64(outMax) {
			return nil, corrupt("cannot decompress lz4: output of %d bytes is over the limit of %d", n, outMax)
		}
		out := make([]byte, n)
		got, err := lz4.UncompressBlock(src[4:], out)
		if err != nil || got != int(n) {
			return nil, corrupt("cannot decompress lz4: the block does not inflate to %d bytes", n)
		}
		return out, nil
	case CodecZstd:
		_, dec := zstdCodecs()
		var h zstd.Header
		if err := h.Decode(src); err == nil && h.HasFCS && h.FrameContentSize > uint64(outMax) {
			return nil, corrupt("cannot decompress zstd: output of %d bytes is over the limit of %d", h.FrameContentSize, outMax)
		}
		out, err := dec.DecodeAll(src, nil)
		if err != nil {
			return nil, corrupt("cannot decompress zstd: %v", err)
		}
		if len(out) > outMax {
			return nil, corrupt("cannot decompress zstd: output is over the limit of %d bytes", outMax)
		}
		return out, nil
	}
	return nil, corrupt("unknown compression codec %d", c)
}
