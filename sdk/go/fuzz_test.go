package gregormq

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// goldenSeeds adds every golden frame of the conformance corpus to a fuzz corpus.
func goldenSeeds(f *testing.F, each func([]byte)) {
	files, _ := filepath.Glob(filepath.Join(goldenDir, "*.hex"))
	if len(files) == 0 {
		f.Fatal("no golden frames to seed the fuzzer with")
	}
	for _, name := range files {
		text, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		b, err := hex.DecodeString(strings.TrimSpace(string(text)))
		if err != nil {
			f.Fatal(err)
		}
		each(b)
	}
}

// Any bytes either decode as a frame whose payload decodes (or fails with a protocol error) and
// re-encodes to the same bytes, or fail with a protocol error; nothing panics.
func FuzzDecodeFrame(f *testing.F) {
	goldenSeeds(f, func(b []byte) { f.Add(b) })
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ReadFrame(bytes.NewReader(b), 1<<20)
		if err != nil {
			var ge *Error
			if !errors.As(err, &ge) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
				t.Fatalf("ReadFrame failed with %T %v, not a protocol error or a short read", err, err)
			}
			return
		}
		again := AppendFrame(nil, fr.Opcode, fr.CorrelationID, fr.Flags, fr.Payload)
		if !bytes.Equal(again, b[:len(again)]) {
			t.Fatalf("frame re-encodes to %x, read from %x", again, b)
		}
		s, err := SchemaFor(fr.Opcode, fr.Flags)
		if err != nil {
			return
		}
		m, err := DecodePayload(s, fr.Payload)
		if err != nil {
			var ge *Error
			if !errors.As(err, &ge) {
				t.Fatalf("DecodePayload failed with %T %v", err, err)
			}
			return
		}
		if _, err := AppendPayload(nil, s, m); err != nil {
			t.Fatalf("a decoded payload does not encode: %v", err)
		}
	})
}

// Any bytes either decode as batches that re-encode to records equal to them, or fail with
// CORRUPT_BATCH; nothing panics and nothing inflates past the limit.
func FuzzDecodeBatches(f *testing.F) {
	goldenSeeds(f, func(b []byte) {
		fr, err := DecodeFrame(b, FramePayloadBytesMaxDefault)
		if err != nil {
			return
		}
		s, _ := SchemaFor(fr.Opcode, fr.Flags)
		m, err := DecodePayload(s, fr.Payload)
		if err != nil {
			return
		}
		for _, field := range []string{"batch", "records"} {
			if raw, ok := m[field].([]byte); ok && len(raw) > 0 {
				f.Add(raw)
			}
		}
	})
	const limit = 1 << 16
	f.Fuzz(func(t *testing.T, b []byte) {
		batches, err := DecodeBatches(b, limit)
		if err != nil {
			if !errors.Is(err, ErrCorruptBatch) {
				t.Fatalf("DecodeBatches failed with %v, not CORRUPT_BATCH", err)
			}
			return
		}
		for _, bt := range batches {
			o := BatchOptions{Codec: CodecNone, BaseOffset: bt.BaseOffset, ProducerID: bt.ProducerID,
				ProducerEpoch: bt.ProducerEpoch, BaseSequence: bt.BaseSequence}
			enc, err := EncodeBatch(bt.Records, o)
			if err != nil {
				t.Fatal(err)
			}
			again, err := DecodeBatches(enc, 1<<30)
			if err != nil || len(again[0].Records) != len(bt.Records) {
				t.Fatalf("a decoded batch does not round-trip: %v", err)
			}
		}
	})
}
