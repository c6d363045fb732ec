package gregormq

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// The language-neutral corpus every SDK checks itself against.
const goldenDir = "../../conformance/golden"

type goldenCase struct {
	Name          string          `json:"name"`
	File          string          `json:"file"`
	Opcode        uint16          `json:"opcode"`
	Schema        string          `json:"schema"`
	Flags         uint8           `json:"flags"`
	CorrelationID uint32          `json:"correlationId"`
	PayloadLength int             `json:"payloadLength"`
	Payload       json.RawMessage `json:"payload"`
}

func loadGolden(t testing.TB) []goldenCase {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(goldenDir, "index.json"))
	if err != nil {
		t.Fatal(err)
	}
	var idx struct{ Cases []goldenCase }
	if err := json.Unmarshal(raw, &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Cases) < 20 {
		t.Fatalf("index.json has %d cases, want at least 20", len(idx.Cases))
	}
	return idx.Cases
}

func goldenBytes(t testing.TB, c goldenCase) []byte {
	t.Helper()
	text, err := os.ReadFile(filepath.Join(goldenDir, c.File))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(text)))
	if err != nil {
		t.Fatalf("%s: %v", c.File, err)
	}
	return b
}

func carriesBatches(name string) bool { return name == "batch" || name == "records" }

func hexOrNull(b []byte) any {
	if b == nil {
		return nil
	}
	return hex.EncodeToString(b)
}

// toJSON renders a decoded payload the way index.json writes it.
func toJSON(t *testing.T, s Schema, m Msg) map[string]any {
	out := map[string]any{}
	for _, fd := range s {
		x := m[fd.Name]
		switch fd.Type.Kind {
		case "bytes":
			b := x.([]byte)
			if b != nil && carriesBatches(fd.Name) {
				batches, err := DecodeBatches(b, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				list := []any{}
				for _, bt := range batches {
					recs := []any{}
					for _, r := range bt.Records {
						hs := []any{}
						for _, h := range r.Headers {
							hs = append(hs, map[string]any{"key": h.Key, "value": hexOrNull(h.Value)})
						}
						recs = append(recs, map[string]any{"offset": r.Offset, "timestamp": r.Timestamp,
							"key": hexOrNull(r.Key), "value": hexOrNull(r.Value), "headers": hs})
					}
					h := bt.BatchHeader
					list = append(list, map[string]any{"baseOffset": h.BaseOffset, "sizeBytes": h.SizeBytes,
						"partitionLeaderEpoch": h.PartitionLeaderEpoch, "crc": h.CRC, "attributes": h.Attributes,
						"codec": h.Codec.String(), "lastOffsetDelta": h.LastOffsetDelta,
						"firstTimestamp": h.FirstTimestamp, "maxTimestamp": h.MaxTimestamp,
						"producerId": h.ProducerID, "producerEpoch": h.ProducerEpoch,
						"baseSequence": h.BaseSequence, "recordCount": h.RecordCount, "records": recs})
				}
				out[fd.Name] = map[string]any{"hex": hex.EncodeToString(b), "batches": list}
			} else {
				out[fd.Name] = hexOrNull(b)
			}
		case "list":
			items := []any{}
			for _, it := range x.([]Msg) {
				items = append(items, toJSON(t, fd.Type.Items, it))
			}
			out[fd.Name] = items
		default:
			out[fd.Name] = x
		}
	}
	return out
}

// fromJSON turns index.json's payload back into a Msg for AppendPayload.
func fromJSON(t *testing.T, s Schema, v map[string]any) Msg {
	m := Msg{}
	for _, fd := range s {
		x := v[fd.Name]
		switch fd.Type.Kind {
		case "bytes":
			if x == nil {
				m[fd.Name] = []byte(nil)
				continue
			}
			h, ok := x.(string)
			if !ok {
				h = x.(map[string]any)["hex"].(string)
			}
			b, err := hex.DecodeString(h)
			if err != nil {
				t.Fatal(err)
			}
			m[fd.Name] = b
		case "list":
			var items []Msg
			for _, it := range x.([]any) {
				items = append(items, fromJSON(t, fd.Type.Items, it.(map[string]any)))
			}
			m[fd.Name] = items
		case "map":
			mm := map[string]string{}
			for k, val := range x.(map[string]any) {
				mm[k] = val.(string)
			}
			m[fd.Name] = mm
		default:
			m[fd.Name] = x
		}
	}
	return m
}

func normalize(t *testing.T, v any) any {
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestGoldenFramesDecodeToIndex(t *testing.T) {
	for _, c := range loadGolden(t) {
		t.Run(c.Name, func(t *testing.T) {
			f, err := ReadFrame(bytes.NewReader(goldenBytes(t, c)), FramePayloadBytesMaxDefault)
			if err != nil {
				t.Fatal(err)
			}
			if f.Opcode != c.Opcode || f.Flags != c.Flags || f.CorrelationID != c.CorrelationID ||
				len(f.Payload) != c.PayloadLength {
				t.Fatalf("header %+v does not match the index", f)
			}
			s, err := SchemaFor(f.Opcode, f.Flags)
			if err != nil {
				t.Fatal(err)
			}
			m, err := DecodePayload(s, f.Payload)
			if err != nil {
				t.Fatal(err)
			}
			var want any
			if err := json.Unmarshal(c.Payload, &want); err != nil {
				t.Fatal(err)
			}
			if got := normalize(t, toJSON(t, s, m)); !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded\n%v\nwant\n%v", got, want)
			}
		})
	}
}

func TestGoldenFramesReencodeByteForByte(t *testing.T) {
	for _, c := range loadGolden(t) {
		t.Run(c.Name, func(t *testing.T) {
			s, err := SchemaFor(c.Opcode, c.Flags)
			if err != nil {
				t.Fatal(err)
			}
			var v map[string]any
			if err := json.Unmarshal(c.Payload, &v); err != nil {
				t.Fatal(err)
			}
			payload, err := AppendPayload(nil, s, fromJSON(t, s, v))
			if err != nil {
				t.Fatal(err)
			}
			got := AppendFrame(nil, c.Opcode, c.CorrelationID, c.Flags, payload)
			if want := goldenBytes(t, c); !bytes.Equal(got, want) {
				t.Fatalf("encoded\n%x\nwant\n%x", got, want)
			}
		})
	}
}

// Every uncompressed batch in the corpus re-encodes from its records byte for byte; a compressed
// one holds the same records section as the uncompressed encoding.
func TestGoldenBatchesReencode(t *testing.T) {
	n := 0
	for _, c := range loadGolden(t) {
		f, err := DecodeFrame(goldenBytes(t, c), FramePayloadBytesMaxDefault)
		if err != nil {
			t.Fatal(err)
		}
		s, _ := SchemaFor(f.Opcode, f.Flags)
		m, err := DecodePayload(s, f.Payload)
		if err != nil {
			t.Fatal(err)
		}
		for _, field := range []string{"batch", "records"} {
			b, _ := m[field].([]byte)
			for len(b) > 0 {
				bs, err := DecodeBatches(b, 1<<20)
				if err != nil {
					t.Fatal(err)
				}
				bt := bs[0]
				golden := b[:bt.SizeBytes]
				o := BatchOptions{Codec: CodecNone, BaseOffset: bt.BaseOffset, ProducerID: bt.ProducerID,
					ProducerEpoch: bt.ProducerEpoch, BaseSequence: bt.BaseSequence}
				plain, err := EncodeBatch(bt.Records, o)
				if err != nil {
					t.Fatal(err)
				}
				if bt.Codec == CodecNone {
					if !bytes.Equal(plain, golden) {
						t.Fatalf("%s: batch re-encodes to\n%x\nwant\n%x", c.Name, plain, golden)
					}
				} else {
					o.Codec = bt.Codec
					mine, err := EncodeBatch(bt.Records, o)
					if err != nil {
						t.Fatal(err)
					}
					again, err := DecodeBatches(mine, 1<<20)
					if err != nil || !reflect.DeepEqual(again[0].Records, bt.Records) {
						t.Fatalf("%s: %s batch does not round-trip: %v", c.Name, bt.Codec, err)
					}
					inner, err := decompress(bt.Codec, golden[BatchHeaderBytes:], 1<<20)
					if err != nil || !bytes.Equal(inner, plain[BatchHeaderBytes:]) {
						t.Fatalf("%s: %s records section differs: %v", c.Name, bt.Codec, err)
					}
				}
				n++
				b = b[bt.SizeBytes:]
			}
		}
	}
	if n < 8 {
		t.Fatalf("checked %d batches, want at least 8", n)
	}
}

// The SDK's schema tables agree with the corpus's language-neutral schemas.json.
func TestSchemasMatchConformance(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(goldenDir, "schemas.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Opcodes    map[string]uint16
		ErrorCodes map[string]uint16
		Schemas    map[string]json.RawMessage
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	for name, want := range doc.ErrorCodes {
		if got, ok := CodeByName(name); !ok || uint16(got) != want {
			t.Errorf("error code %s: got %d, want %d", name, got, want)
		}
	}
	if len(codeNames) != len(doc.ErrorCodes) {
		t.Errorf("the SDK knows %d error codes, the corpus %d", len(codeNames), len(doc.ErrorCodes))
	}
	for op, name := range OpNames {
		if doc.Opcodes[name] != op {
			t.Errorf("opcode %s: got 0x%04x, want 0x%04x", name, op, doc.Opcodes[name])
		}
		var want struct{ Request, Response json.RawMessage }
		if err := json.Unmarshal(doc.Schemas[name], &want); err != nil {
			t.Fatal(err)
		}
		s := OpSchemas[name]
		for i, w := range []json.RawMessage{want.Request, want.Response} {
			if got := normalize(t, schemaJSON(s[i])); !reflect.DeepEqual(got, normalize(t, w)) {
				t.Errorf("%s schema %d: got %v, want %s", name, i, got, w)
			}
		}
	}
	if got := normalize(t, schemaJSON(ErrorSchema)); !reflect.DeepEqual(got, normalize(t, doc.Schemas["ERROR"])) {
		t.Errorf("error schema: got %v", got)
	}
}

func schemaJSON(s Schema) []any {
	out := []any{}
	for _, fd := range s {
		var typ any = fd.Type.Kind
		switch fd.Type.Kind {
		case "list":
			typ = map[string]any{"list": schemaJSON(fd.Type.Items)}
		case "map":
			typ = map[string]any{"map": true}
		}
		out = append(out, []any{fd.Name, typ})
	}
	return out
}

func TestCRC32CCheckValue(t *testing.T) {
	if got := CRC32C([]byte("123456789")); got != 0xe3069283 {
		t.Fatalf("CRC32C(123456789) = %#x, want 0xe3069283", got)
	}
}
