package gregormq

import (
	"encoding/binary"
	"unicode/utf8"
)

// Record batch layout (docs/protocol.md §7): Kafka's RecordBatch v2.
const (
	BatchHeaderBytes       = 61
	batchMagic             = 2
	batchLengthPrefixBytes = 12
	offCRC                 = 17
	offAttributes          = 21
	codecMask              = 0x07
	// NoProducerID marks a batch from a producer that is not idempotent.
	NoProducerID = -1
)

// Header is one record header; a nil Value is null.
type Header struct {
	Key   string
	Value []byte
}

// Record is one record of a batch. Offset is set on decoding only.
type Record struct {
	Offset    int64
	Timestamp int64
	Key       []byte
	Value     []byte
	Headers   []Header
}

// BatchHeader is a decoded batch header.
type BatchHeader struct {
	BaseOffset           int64
	SizeBytes            int
	PartitionLeaderEpoch int32
	CRC                  uint32
	Attributes           int16
	Codec                Codec
	LastOffsetDelta      int32
	FirstTimestamp       int64
	MaxTimestamp         int64
	ProducerID           int64
	ProducerEpoch        int16
	BaseSequence         int32
	RecordCount          int32
}

// Batch is a decoded batch: its header and records.
type Batch struct {
	BatchHeader
	Records []Record
}

// BatchOptions are the producer fields of a batch being encoded.
type BatchOptions struct {
	Codec         Codec
	BaseOffset    int64
	ProducerID    int64 // NoProducerID (-1) unless idempotent
	ProducerEpoch int16
	BaseSequence  int32
}

// PlainBatch is the options of a batch from a producer that is not idempotent.
func PlainBatch(c Codec) BatchOptions {
	return BatchOptions{Codec: c, ProducerID: NoProducerID, ProducerEpoch: -1, BaseSequence: -1}
}

// EncodeBatch encodes records as one batch. Timestamps are taken as given.
func EncodeBatch(records []Record, o BatchOptions) ([]byte, error) {
	var b batchBuilder
	for _, r := range records {
		b.add(r)
	}
	return b.seal(o)
}

// batchBuilder encodes records into a batch's body one at a time, as a producer queues them, so a
// message's bytes are copied once and nothing per message is kept until the batch is sent.
type batchBuilder struct {
	// body holds the header's room and the records encoded so far, uncompressed.
	body    []byte
	records int
	firstTs int64
	maxTs   int64
}

// add encodes one more record; timestamps are taken as given.
func (b *batchBuilder) add(r Record) {
	if b.records == 0 {
		b.firstTs, b.maxTs = r.Timestamp, r.Timestamp
		if b.body == nil {
			b.body = make([]byte, BatchHeaderBytes, BatchHeaderBytes+64+recordBytesMax(r))
		}
	}
	b.maxTs = max(b.maxTs, r.Timestamp)
	b.body = appendRecord(b.body, r, r.Timestamp-b.firstTs, int64(b.records))
	b.records++
}

// seal compresses the body if the codec asks and writes the header: the finished batch.
func (b *batchBuilder) seal(o BatchOptions) ([]byte, error) {
	if b.records == 0 {
		return nil, &Error{Code: CodeInvalidRequest, Message: "a batch needs at least one record"}
	}
	out := b.body
	if o.Codec != CodecNone {
		packed, err := compress(o.Codec, b.body[BatchHeaderBytes:])
		if err != nil {
			return nil, err
		}
		out = make([]byte, BatchHeaderBytes+len(packed))
		copy(out[BatchHeaderBytes:], packed)
	}
	be := binary.BigEndian
	be.PutUint64(out[0:], uint64(o.BaseOffset))
	be.PutUint32(out[8:], uint32(len(out)-batchLengthPrefixBytes))
	be.PutUint32(out[12:], 0xffffffff) // partition leader epoch -1
	out[16] = batchMagic
	be.PutUint16(out[offAttributes:], uint16(o.Codec))
	be.PutUint32(out[23:], uint32(b.records-1))
	be.PutUint64(out[27:], uint64(b.firstTs))
	be.PutUint64(out[35:], uint64(b.maxTs))
	be.PutUint64(out[43:], uint64(o.ProducerID))
	be.PutUint16(out[51:], uint16(o.ProducerEpoch))
	be.PutUint32(out[53:], uint32(o.BaseSequence))
	be.PutUint32(out[57:], uint32(b.records))
	be.PutUint32(out[offCRC:], CRC32C(out[offAttributes:]))
	return out, nil
}

// varintBytesMax is the most bytes a zig-zag varint of an int64 takes.
const varintBytesMax = binary.MaxVarintLen64

// recordBytesMax bounds the bytes appendRecord writes for r, its length prefix included.
func recordBytesMax(r Record) int {
	n := 1 + 5*varintBytesMax + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 2*varintBytesMax + len(h.Key) + len(h.Value)
	}
	return varintBytesMax + n
}

func appendVarBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	return append(binary.AppendVarint(dst, int64(len(b))), b...)
}

func varBytesLen(b []byte) int {
	if b == nil {
		return 1
	}
	return varintLen(int64(len(b))) + len(b)
}

// varintLen is how many bytes binary.AppendVarint writes for v.
func varintLen(v int64) int {
	u := uint64(v) << 1
	if v < 0 {
		u = ^u
	}
	n := 1
	for u >= 0x80 {
		u >>= 7
		n++
	}
	return n
}

// appendRecord appends one record, its length first: the length is worked out before the fields
// are written, so the record goes straight into dst with no buffer of its own.
func appendRecord(dst []byte, r Record, tsDelta, offDelta int64) []byte {
	length := 1 + varintLen(tsDelta) + varintLen(offDelta) + varBytesLen(r.Key) + varBytesLen(r.Value) +
		varintLen(int64(len(r.Headers)))
	for _, h := range r.Headers {
		length += varintLen(int64(len(h.Key))) + len(h.Key) + varBytesLen(h.Value)
	}
	dst = binary.AppendVarint(dst, int64(length))
	dst = append(dst, 0)
	dst = binary.AppendVarint(dst, tsDelta)
	dst = binary.AppendVarint(dst, offDelta)
	dst = appendVarBytes(dst, r.Key)
	dst = appendVarBytes(dst, r.Value)
	dst = binary.AppendVarint(dst, int64(len(r.Headers)))
	for _, h := range r.Headers {
		dst = append(binary.AppendVarint(dst, int64(len(h.Key))), h.Key...)
		dst = appendVarBytes(dst, h.Value)
	}
	return dst
}

// ReadBatchHeader decodes the header of the batch at the start of b, checking that its length fits b.
func ReadBatchHeader(b []byte) (BatchHeader, error) {
	if len(b) < BatchHeaderBytes {
		return BatchHeader{}, corrupt("batch of %d bytes is shorter than its header", len(b))
	}
	be := binary.BigEndian
	length := int32(be.Uint32(b[8:]))
	size := int64(length) + batchLengthPrefixBytes
	if size < BatchHeaderBytes || size > int64(len(b)) {
		return BatchHeader{}, corrupt("batch length %d does not fit the %d bytes given", length, len(b))
	}
	if b[16] != batchMagic {
		return BatchHeader{}, corrupt("batch magic %d is not 2", int8(b[16]))
	}
	attrs := int16(be.Uint16(b[offAttributes:]))
	codec := Codec(attrs & codecMask)
	if codec > CodecZstd {
		return BatchHeader{}, corrupt("unknown compression codec %d", codec)
	}
	return BatchHeader{
		BaseOffset:           int64(be.Uint64(b[0:])),
		SizeBytes:            int(size),
		PartitionLeaderEpoch: int32(be.Uint32(b[12:])),
		CRC:                  be.Uint32(b[offCRC:]),
		Attributes:           attrs,
		Codec:                codec,
		LastOffsetDelta:      int32(be.Uint32(b[23:])),
		FirstTimestamp:       int64(be.Uint64(b[27:])),
		MaxTimestamp:         int64(be.Uint64(b[35:])),
		ProducerID:           int64(be.Uint64(b[43:])),
		ProducerEpoch:        int16(be.Uint16(b[51:])),
		BaseSequence:         int32(be.Uint32(b[53:])),
		RecordCount:          int32(be.Uint32(b[57:])),
	}, nil
}

// DecodeBatches decodes batches back to back, as PRODUCE, DELIVER and FETCH carry them. Every
// batch's CRC-32C and structure are checked; recordsBytesMax bounds each batch's (decompressed)
// records section. Errors match ErrCorruptBatch.
func DecodeBatches(b []byte, recordsBytesMax int) ([]Batch, error) {
	var out []Batch
	err := eachRecord(b, recordsBytesMax, func(h BatchHeader) {
		out = append(out, Batch{h, make([]Record, 0, h.RecordCount)})
	}, func(r Record) {
		last := &out[len(out)-1]
		last.Records = append(last.Records, r)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// eachRecord decodes batches back to back, checked as DecodeBatches checks them, with no slice of
// its own: batch is called with each batch's header once its record count is known to fit the
// batch, then record with each of its records. After an error, what was passed on is to be
// dropped.
func eachRecord(b []byte, recordsBytesMax int, batch func(BatchHeader), record func(Record)) error {
	for len(b) > 0 {
		h, err := ReadBatchHeader(b)
		if err != nil {
			return err
		}
		if err := decodeRecords(b[:h.SizeBytes], h, recordsBytesMax, batch, record); err != nil {
			return err
		}
		b = b[h.SizeBytes:]
	}
	return nil
}

type varReader struct {
	b   []byte
	pos int
}

func (r *varReader) varint() (int64, bool) {
	v, n := binary.Varint(r.b[r.pos:])
	if n <= 0 {
		return 0, false
	}
	r.pos += n
	return v, true
}

func (r *varReader) varBytes() ([]byte, bool, bool) {
	n, ok := r.varint()
	if !ok || n < -1 || n > int64(len(r.b)-r.pos) {
		return nil, false, false
	}
	if n == -1 {
		return nil, true, true
	}
	out := r.b[r.pos : r.pos+int(n) : r.pos+int(n)]
	r.pos += int(n)
	return out, false, true
}

func decodeRecords(batch []byte, h BatchHeader, recordsBytesMax int, onBatch func(BatchHeader), onRecord func(Record)) error {
	if CRC32C(batch[offAttributes:]) != h.CRC {
		return corrupt("batch at offset %d failed its CRC-32C check", h.BaseOffset)
	}
	if h.RecordCount < 1 || h.LastOffsetDelta != h.RecordCount-1 {
		return corrupt("batch claims %d records with last offset delta %d", h.RecordCount, h.LastOffsetDelta)
	}
	body, err := decompress(h.Codec, batch[BatchHeaderBytes:], recordsBytesMax)
	if err != nil {
		return err
	}
	r := &varReader{b: body}
	// Each record takes at least 7 bytes, so a count the body cannot hold is refused up front.
	if int64(h.RecordCount) > int64(len(body)) {
		return corrupt("batch claims %d records in %d bytes", h.RecordCount, len(body))
	}
	onBatch(h)
	for i := int64(0); i < int64(h.RecordCount); i++ {
		length, ok := r.varint()
		if !ok || length < 0 || length > int64(len(body)-r.pos) {
			return corrupt("record %d length is wrong", i)
		}
		end := r.pos + int(length)
		rr := &varReader{b: body[:end], pos: r.pos}
		if rr.pos >= end {
			return corrupt("record %d is empty", i)
		}
		rr.pos++ // attributes
		tsDelta, ok1 := rr.varint()
		offDelta, ok2 := rr.varint()
		if !ok1 || !ok2 {
			return corrupt("record %d is cut off", i)
		}
		if offDelta != i {
			return corrupt("record %d has offset delta %d", i, offDelta)
		}
		key, _, ok3 := rr.varBytes()
		value, _, ok4 := rr.varBytes()
		nh, ok5 := rr.varint()
		if !ok3 || !ok4 || !ok5 || nh < 0 || nh > int64(end-rr.pos) {
			return corrupt("record %d fields are wrong", i)
		}
		var headers []Header
		for k := int64(0); k < nh; k++ {
			hk, null, ok := rr.varBytes()
			if !ok || null {
				return corrupt("record %d header %d key is wrong", i, k)
			}
			if !utf8.Valid(hk) {
				return corrupt("a header key is not valid UTF-8")
			}
			hv, _, ok := rr.varBytes()
			if !ok {
				return corrupt("record %d header %d value is wrong", i, k)
			}
			headers = append(headers, Header{Key: string(hk), Value: hv})
		}
		if rr.pos != end {
			return corrupt("record %d is %d bytes long but its fields take %d", i, length, int(length)-(end-rr.pos))
		}
		r.pos = end
		onRecord(Record{Offset: h.BaseOffset + i, Timestamp: h.FirstTimestamp + tsDelta,
			Key: key, Value: value, Headers: headers})
	}
	if r.pos != len(body) {
		return corrupt("%d unexpected bytes after the batch's records", len(body)-r.pos)
	}
	return nil
}

// Murmur2 is Kafka's murmur2 hash (seed 0x9747b28c), so keys land on the partitions a Kafka client
// would pick.
func Murmur2(data []byte) int32 {
	const seed, m = uint32(0x9747b28c), uint32(0x5bd1e995)
	n := len(data)
	h := seed ^ uint32(n)
	whole := n &^ 3
	for i := 0; i < whole; i += 4 {
		k := binary.LittleEndian.Uint32(data[i:])
		k *= m
		k ^= k >> 24
		k *= m
		h = h*m ^ k
	}
	switch n & 3 {
	case 3:
		h ^= uint32(data[whole+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[whole+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[whole])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int32(h)
}

// PartitionForKey is the partition a key goes to: the positive murmur2 of the key, modulo the
// topic's partition count.
func PartitionForKey(key []byte, partitions int) int {
	return int(uint32(Murmur2(key))&0x7fffffff) % partitions
}
