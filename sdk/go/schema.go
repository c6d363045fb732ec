package gregormq

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Opcodes (docs/protocol.md §5).
const (
	OpHello             uint16 = 0x0001
	OpPing              uint16 = 0x0002
	OpAuthStart         uint16 = 0x0003
	OpAuthFinish        uint16 = 0x0004
	OpProduce           uint16 = 0x0101
	OpInitProducerID    uint16 = 0x0102
	OpSubscribe         uint16 = 0x0201
	OpDeliver           uint16 = 0x0202
	OpCredit            uint16 = 0x0203
	OpAck               uint16 = 0x0204
	OpUnsubscribe       uint16 = 0x0205
	OpFetch             uint16 = 0x0206
	OpDurableCommit     uint16 = 0x0207
	OpDurableFetch      uint16 = 0x0208
	OpCreateTopic       uint16 = 0x0301
	OpDeleteTopic       uint16 = 0x0302
	OpListTopics        uint16 = 0x0303
	OpDescribeTopic     uint16 = 0x0304
	OpAlterTopic        uint16 = 0x0305
	OpCreatePartitions  uint16 = 0x0306
	OpRepairPartitions  uint16 = 0x0307
	OpReassignPartition uint16 = 0x0308
	OpRebalanceLeaders  uint16 = 0x0309
	OpGroupHeartbeat    uint16 = 0x0401
	OpGroupLeave        uint16 = 0x0402
	OpOffsetCommit      uint16 = 0x0403
	OpOffsetFetch       uint16 = 0x0404
	OpListGroups        uint16 = 0x0405
	OpDescribeGroup     uint16 = 0x0406
	OpResetOffsets      uint16 = 0x0407
	OpClusterMembers    uint16 = 0x0501
	OpUserPut           uint16 = 0x0701
	OpUserDelete        uint16 = 0x0702
	OpUserList          uint16 = 0x0703
	OpACLAdd            uint16 = 0x0704
	OpACLRemove         uint16 = 0x0705
	OpACLList           uint16 = 0x0706
	OpMetadata          uint16 = 0x0502
)

// FieldType is a payload field's wire type: "u8", "u16", "u32", "i64", "string", "bytes", "map"
// (u32 count, then string key and string value pairs) or "list" (u32 count, then items of Items).
type FieldType struct {
	Kind  string
	Items Schema
}

// Field is one named field of a payload.
type Field struct {
	Name string
	Type FieldType
}

// Schema is a payload's fields in wire order.
type Schema []Field

// Msg is a decoded payload: integers as int64, strings as string, bytes as []byte (nil for a null
// field), lists as []Msg and maps as map[string]string.
type Msg map[string]any

// Limits of the decoder.
const (
	// ListItemsMax is the largest list or map count a decoder accepts.
	ListItemsMax = 100_000
	// StringBytesMax is the longest string on the wire (its length is a u16).
	StringBytesMax = 65_535
)

func f(name, kind string) Field        { return Field{name, FieldType{Kind: kind}} }
func list(name string, s Schema) Field { return Field{name, FieldType{Kind: "list", Items: s}} }

var (
	topicPartition = Schema{f("topic", "string"), f("partition", "u32")}
	groupOffset    = append(append(Schema{}, topicPartition...), f("offset", "i64"), f("highWatermark", "i64"))
	idList         = Schema{f("id", "string")}
)

func join(parts ...Schema) Schema {
	var out Schema
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// OpSchemas holds the request and response schema of every opcode a client sends or receives, by
// protocol name (a DELIVER push uses its request schema).
var OpSchemas = map[string][2]Schema{
	"HELLO": {
		{f("versionMin", "u8"), f("versionMax", "u8"), f("clientId", "string"), f("credential", "bytes")},
		{f("version", "u8"), f("brokerId", "string"), f("payloadBytesMax", "u32"), f("codecs", "u32")},
	},
	"PING": {{}, {}},
	"AUTH_START": {
		{f("mechanism", "string"), f("message", "bytes")},
		{f("message", "bytes")},
	},
	"AUTH_FINISH": {{f("message", "bytes")}, {f("message", "bytes")}},
	"PRODUCE": {
		join(topicPartition, Schema{f("acks", "u8"), f("timeoutMs", "u32"), f("batch", "bytes")}),
		{f("baseOffset", "i64"), f("logStartOffset", "i64")},
	},
	"INIT_PRODUCER_ID": {{}, {f("producerId", "i64"), f("producerEpoch", "u16")}},
	"SUBSCRIBE": {
		join(Schema{f("subscriptionId", "u32")}, topicPartition, Schema{f("start", "u8"),
			f("startValue", "i64"), f("durableName", "string"), f("ackTimeoutMs", "u32"),
			f("creditMessages", "u32"), f("creditBytes", "u32")}),
		{f("startOffset", "i64"), f("logStartOffset", "i64"), f("highWatermark", "i64")},
	},
	"DELIVER": {
		{f("subscriptionId", "u32"), f("firstOffset", "i64"), f("redelivery", "u8"), f("records", "bytes")},
		{},
	},
	"CREDIT":      {{f("subscriptionId", "u32"), f("messages", "u32"), f("bytes", "u32")}, {}},
	"ACK":         {{f("subscriptionId", "u32"), f("offset", "i64")}, {}},
	"UNSUBSCRIBE": {{f("subscriptionId", "u32")}, {}},
	"FETCH": {
		join(topicPartition, Schema{f("offset", "i64"), f("maxBytes", "u32")}),
		{f("logStartOffset", "i64"), f("highWatermark", "i64"), f("records", "bytes")},
	},
	"DURABLE_COMMIT": {
		{list("offsets", join(topicPartition, Schema{f("name", "string"), f("offset", "i64"), f("incarnation", "i64")}))},
		{},
	},
	"DURABLE_FETCH":     {join(topicPartition, Schema{f("name", "string")}), {f("offset", "i64")}},
	"CREATE_TOPIC":      {{f("name", "string"), f("partitions", "u32"), f("configs", "map")}, {}},
	"DELETE_TOPIC":      {{f("name", "string")}, {}},
	"LIST_TOPICS":       {{}, {list("topics", Schema{f("name", "string"), f("partitions", "u32")})}},
	"ALTER_TOPIC":       {{f("name", "string"), f("configs", "map")}, {}},
	"CREATE_PARTITIONS": {{f("name", "string"), f("count", "u32")}, {}},
	"REPAIR_PARTITIONS": {
		{f("name", "string"), list("partitions", Schema{f("partition", "u32")})},
		{list("partitions", Schema{f("partition", "u32"), f("cutOffset", "i64"), f("endOffset", "i64"),
			f("bytesDropped", "i64"), f("damage", "string")})},
	},
	"REASSIGN_PARTITION": {
		{f("name", "string"), f("partition", "u32"), list("replicas", idList)},
		{},
	},
	"REBALANCE_LEADERS": {
		{f("thisNodeOnly", "u8")},
		{f("moved", "u32"), f("waiting", "u32"), list("unreached", idList)},
	},
	"GROUP_HEARTBEAT": {
		{f("group", "string"), f("memberId", "string"), f("instanceId", "string"),
			f("generation", "i64"), f("sessionTimeoutMs", "u32"), f("assignor", "string"),
			list("topics", Schema{f("name", "string")}), list("owned", topicPartition)},
		{f("memberId", "string"), f("generation", "i64"), f("heartbeatIntervalMs", "u32"),
			list("assigned", topicPartition), f("pending", "u32")},
	},
	"GROUP_LEAVE": {{f("group", "string"), f("memberId", "string")}, {}},
	"OFFSET_COMMIT": {
		{f("group", "string"), f("memberId", "string"), f("generation", "i64"),
			list("offsets", join(topicPartition, Schema{f("offset", "i64")}))},
		{},
	},
	"LIST_GROUPS": {{}, {list("groups", Schema{f("group", "string"), f("state", "string"),
		f("members", "u32"), f("generation", "i64")})}},
	"DESCRIBE_GROUP": {
		{f("group", "string")},
		{f("group", "string"), f("state", "string"), f("generation", "i64"), f("assignor", "string"),
			list("members", Schema{f("memberId", "string"), f("instanceId", "string"),
				f("clientId", "string"), f("generation", "i64"), list("assigned", topicPartition)}),
			list("offsets", groupOffset)},
	},
	"RESET_OFFSETS": {
		{f("group", "string"), f("topic", "string"), list("partitions", Schema{f("partition", "u32")}),
			f("to", "u8"), f("value", "i64"), f("dryRun", "u8")},
		{list("offsets", groupOffset)},
	},
	"OFFSET_FETCH": {
		{f("group", "string"), list("partitions", topicPartition)},
		{list("offsets", groupOffset)},
	},
	"METADATA": {
		{list("topics", Schema{f("name", "string")}), f("autoCreate", "u8")},
		{
			list("nodes", Schema{f("id", "string"), f("host", "string"), f("clientPort", "u32")}),
			list("topics", Schema{f("name", "string"), f("error", "u16"), list("partitions",
				Schema{f("partition", "u32"), f("leader", "string"), list("replicas", idList)})}),
			f("controller", "string"),
		},
	},
	"DESCRIBE_TOPIC": {
		{f("name", "string")},
		{f("name", "string"), f("configs", "map"), list("partitions", Schema{
			f("partition", "u32"), f("logStartOffset", "i64"), f("highWatermark", "i64"),
			f("sizeBytes", "i64"), f("subscribers", "u32"), f("damagedFromOffset", "i64"),
			f("leader", "string"), list("replicas", idList), list("isr", idList),
			f("moving", "u8")})},
	},
	"USER_PUT": {
		{f("name", "string"), f("salt", "bytes"), f("iterations", "u32"), f("storedKey", "bytes"),
			f("serverKey", "bytes")},
		{},
	},
	"USER_DELETE": {{f("name", "string")}, {}},
	"USER_LIST": {
		{},
		{list("users", Schema{f("name", "string"), f("mechanism", "string"), f("iterations", "u32")})},
	},
	"ACL_ADD":    {aclEntry, {}},
	"ACL_REMOVE": {aclEntry, {}},
	"ACL_LIST":   {{}, {list("acls", aclEntry)}},
}

// aclEntry is one ACL: principal × resource × operation, every field a string.
var aclEntry = Schema{f("principal", "string"), f("resourceType", "string"), f("pattern", "string"),
	f("name", "string"), f("operation", "string")}

// ErrorSchema is the payload of every error frame.
var ErrorSchema = Schema{f("code", "u16"), f("message", "string")}

// OpNames maps opcodes to their protocol names.
var OpNames = map[uint16]string{
	OpHello: "HELLO", OpPing: "PING", OpProduce: "PRODUCE", OpInitProducerID: "INIT_PRODUCER_ID",
	OpSubscribe: "SUBSCRIBE", OpDeliver: "DELIVER", OpCredit: "CREDIT", OpAck: "ACK",
	OpUnsubscribe: "UNSUBSCRIBE", OpFetch: "FETCH", OpDurableCommit: "DURABLE_COMMIT",
	OpDurableFetch: "DURABLE_FETCH", OpCreateTopic: "CREATE_TOPIC", OpDeleteTopic: "DELETE_TOPIC",
	OpListTopics: "LIST_TOPICS", OpDescribeTopic: "DESCRIBE_TOPIC", OpAlterTopic: "ALTER_TOPIC",
	OpCreatePartitions: "CREATE_PARTITIONS", OpRepairPartitions: "REPAIR_PARTITIONS",
	OpReassignPartition: "REASSIGN_PARTITION", OpRebalanceLeaders: "REBALANCE_LEADERS",
	OpGroupHeartbeat: "GROUP_HEARTBEAT", OpGroupLeave: "GROUP_LEAVE", OpOffsetCommit: "OFFSET_COMMIT",
	OpOffsetFetch: "OFFSET_FETCH", OpListGroups: "LIST_GROUPS", OpDescribeGroup: "DESCRIBE_GROUP",
	OpResetOffsets: "RESET_OFFSETS", OpMetadata: "METADATA", OpAuthStart: "AUTH_START",
	OpAuthFinish: "AUTH_FINISH", OpUserPut: "USER_PUT", OpUserDelete: "USER_DELETE",
	OpUserList: "USER_LIST", OpACLAdd: "ACL_ADD", OpACLRemove: "ACL_REMOVE", OpACLList: "ACL_LIST",
}

// SchemaFor is the schema a receiver picks from a frame header alone.
func SchemaFor(opcode uint16, flags uint8) (Schema, error) {
	if flags&FlagError != 0 {
		return ErrorSchema, nil
	}
	name, ok := OpNames[opcode]
	if !ok {
		return nil, &Error{Code: CodeUnknownOpcode, Message: fmt.Sprintf("opcode 0x%04x is not known", opcode)}
	}
	s := OpSchemas[name]
	if flags&FlagResponse != 0 {
		return s[1], nil
	}
	return s[0], nil
}

// AppendPayload appends v encoded by schema s to dst. A missing integer is 0, a missing string
// empty, a missing bytes field null, a missing list or map empty.
func AppendPayload(dst []byte, s Schema, v Msg) ([]byte, error) {
	var err error
	for _, fd := range s {
		x := v[fd.Name]
		switch fd.Type.Kind {
		case "u8", "u16", "u32", "i64":
			n, ok := asInt(x)
			if !ok {
				return nil, fmt.Errorf("gregormq: field %s is %T, not an integer", fd.Name, x)
			}
			dst, err = appendInt(dst, fd.Type.Kind, n, fd.Name)
		case "string":
			str, _ := x.(string)
			dst, err = appendString(dst, str, fd.Name)
		case "bytes":
			b, _ := x.([]byte)
			dst = appendBytes(dst, b)
		case "list":
			items, _ := x.([]Msg)
			dst = binary.BigEndian.AppendUint32(dst, uint32(len(items)))
			for _, it := range items {
				if dst, err = AppendPayload(dst, fd.Type.Items, it); err != nil {
					return nil, err
				}
			}
		case "map":
			m, _ := x.(map[string]string)
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			// Map order carries no meaning (docs/protocol.md §2); sorted keys make encoding repeatable.
			sort.Strings(keys)
			dst = binary.BigEndian.AppendUint32(dst, uint32(len(keys)))
			for _, k := range keys {
				if dst, err = appendString(dst, k, fd.Name); err == nil {
					dst, err = appendString(dst, m[k], fd.Name)
				}
				if err != nil {
					return nil, err
				}
			}
		default:
			return nil, fmt.Errorf("gregormq: field %s has unknown type %q", fd.Name, fd.Type.Kind)
		}
		if err != nil {
			return nil, err
		}
	}
	return dst, nil
}

func asInt(x any) (int64, bool) {
	switch n := x.(type) {
	case nil:
		return 0, true
	case int:
		return int64(n), true
	case int64:
		return n, true
	case uint32:
		return int64(n), true
	case uint16:
		return int64(n), true
	case uint8:
		return int64(n), true
	case float64:
		if n == math.Trunc(n) && math.Abs(n) <= 1<<53 {
			return int64(n), true
		}
	}
	return 0, false
}

func appendInt(dst []byte, kind string, n int64, name string) ([]byte, error) {
	limit := map[string]int64{"u8": math.MaxUint8, "u16": math.MaxUint16, "u32": math.MaxUint32}
	if kind == "i64" {
		return binary.BigEndian.AppendUint64(dst, uint64(n)), nil
	}
	if n < 0 || n > limit[kind] {
		return nil, fmt.Errorf("gregormq: field %s = %d does not fit a %s", name, n, kind)
	}
	switch kind {
	case "u8":
		return append(dst, byte(n)), nil
	case "u16":
		return binary.BigEndian.AppendUint16(dst, uint16(n)), nil
	}
	return binary.BigEndian.AppendUint32(dst, uint32(n)), nil
}

func appendString(dst []byte, s string, name string) ([]byte, error) {
	if len(s) > StringBytesMax {
		return nil, fmt.Errorf("gregormq: field %s is a string of %d bytes, over %d", name, len(s), StringBytesMax)
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...), nil
}

func appendBytes(dst []byte, b []byte) []byte {
	if b == nil {
		return binary.BigEndian.AppendUint32(dst, 0xffffffff)
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

// DecodePayload decodes a whole payload strictly: a short payload, bytes left over, invalid UTF-8,
// an over-long list or a repeated map key is a MALFORMED_REQUEST error naming the field.
func DecodePayload(s Schema, payload []byte) (Msg, error) {
	r := &reader{b: payload}
	m := r.read(s, "")
	if r.err == nil && r.pos != len(r.b) {
		r.fail("%d unexpected bytes after the payload", len(r.b)-r.pos)
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

type reader struct {
	b   []byte
	pos int
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = &Error{Code: CodeMalformedRequest, Message: fmt.Sprintf(format, args...)}
	}
}

func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b)-r.pos {
		r.fail("truncated %s: need %d bytes at %d, have %d", what, n, r.pos, len(r.b)-r.pos)
		return nil
	}
	out := r.b[r.pos : r.pos+n]
	r.pos += n
	return out
}

func (r *reader) u32(what string) uint32 {
	if b := r.take(4, what); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) str(what string) string {
	b := r.take(2, what)
	if b == nil {
		return ""
	}
	s := r.take(int(binary.BigEndian.Uint16(b)), what)
	if s != nil && !utf8.Valid(s) {
		r.fail("%s is not valid UTF-8", what)
	}
	return string(s)
}

func (r *reader) read(s Schema, prefix string) Msg {
	m := Msg{}
	for _, fd := range s {
		what := prefix + fd.Name
		switch fd.Type.Kind {
		case "u8":
			if b := r.take(1, what); b != nil {
				m[fd.Name] = int64(b[0])
			}
		case "u16":
			if b := r.take(2, what); b != nil {
				m[fd.Name] = int64(binary.BigEndian.Uint16(b))
			}
		case "u32":
			m[fd.Name] = int64(r.u32(what))
		case "i64":
			if b := r.take(8, what); b != nil {
				m[fd.Name] = int64(binary.BigEndian.Uint64(b))
			}
		case "string":
			m[fd.Name] = r.str(what)
		case "bytes":
			n := r.u32(what)
			if n == 0xffffffff {
				m[fd.Name] = []byte(nil)
			} else if b := r.take(int(n), what); b != nil {
				m[fd.Name] = b
			}
		case "list", "map":
			n := r.u32(what + " count")
			if n > ListItemsMax {
				r.fail("%s has %d items, over %d", what, n, ListItemsMax)
			}
			if r.err != nil {
				return m
			}
			if fd.Type.Kind == "list" {
				items := make([]Msg, 0, min(int(n), 1024))
				for i := 0; i < int(n) && r.err == nil; i++ {
					items = append(items, r.read(fd.Type.Items, what+"["+strconv.Itoa(i)+"]."))
				}
				m[fd.Name] = items
			} else {
				mm := make(map[string]string, min(int(n), 1024))
				for i := 0; i < int(n) && r.err == nil; i++ {
					k := r.str(what + " key")
					if _, dup := mm[k]; dup && r.err == nil {
						r.fail("%s repeats key %s", what, k)
					}
					if k == "__proto__" {
						r.fail("%s key __proto__ is not allowed", what)
					}
					mm[k] = r.str(what + " value")
				}
				m[fd.Name] = mm
			}
		}
		if r.err != nil {
			return m
		}
	}
	return m
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
