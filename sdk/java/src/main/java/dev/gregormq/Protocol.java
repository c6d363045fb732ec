package dev.gregormq;

import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;

/** Opcodes, error codes and each opcode's request and response schema (protocol version 1). */
public final class Protocol {
  private Protocol() {}

  /** The protocol version this SDK speaks. */
  public static final int VERSION = 1;

  public static final int HELLO = 0x0001;
  public static final int PING = 0x0002;
  public static final int PRODUCE = 0x0101;
  public static final int INIT_PRODUCER_ID = 0x0102;
  public static final int SUBSCRIBE = 0x0201;
  public static final int DELIVER = 0x0202;
  public static final int CREDIT = 0x0203;
  public static final int ACK = 0x0204;
  public static final int UNSUBSCRIBE = 0x0205;
  public static final int CREATE_TOPIC = 0x0301;
  public static final int DELETE_TOPIC = 0x0302;
  public static final int LIST_TOPICS = 0x0303;
  public static final int DESCRIBE_TOPIC = 0x0304;
  public static final int GROUP_HEARTBEAT = 0x0401;
  public static final int GROUP_LEAVE = 0x0402;
  public static final int OFFSET_COMMIT = 0x0403;
  public static final int OFFSET_FETCH = 0x0404;
  public static final int LIST_GROUPS = 0x0405;
  public static final int DESCRIBE_GROUP = 0x0406;
  public static final int RESET_OFFSETS = 0x0407;
  public static final int METADATA = 0x0502;

  /** Opcode by name. */
  public static final Map<String, Integer> OPCODES;
  /** Request and response schema by opcode name. */
  public static final Map<String, Schema[]> SCHEMAS;
  /** The payload of every error frame. */
  public static final Schema ERROR = Schema.of("code:u16 message:string");

  private static final Map<Integer, String> NAMES_BY_OPCODE = new LinkedHashMap<>();

  static {
    Map<String, Integer> ops = new LinkedHashMap<>();
    Map<String, Schema[]> s = new LinkedHashMap<>();
    String tp = "topic:string partition:u32";
    String groupOffsets = "offsets:[" + tp + " offset:i64 highWatermark:i64]";
    String ids = "[id:string]";
    String acl = "principal:string resourceType:string pattern:string name:string operation:string";
    String deltas = "deltas:[id:string incarnation:i64 entries:[key:string value:string version:i64]]";
    String digest = "digest:[id:string incarnation:i64 maxVersion:i64]";
    def(ops, s, "HELLO", 0x0001, "versionMin:u8 versionMax:u8 clientId:string credential:bytes",
        "version:u8 brokerId:string payloadBytesMax:u32 codecs:u32");
    def(ops, s, "PING", 0x0002, "", "");
    def(ops, s, "AUTH_START", 0x0003, "mechanism:string message:bytes", "message:bytes");
    def(ops, s, "AUTH_FINISH", 0x0004, "message:bytes", "message:bytes");
    def(ops, s, "PRODUCE", 0x0101, tp + " acks:u8 timeoutMs:u32 batch:bytes",
        "baseOffset:i64 logStartOffset:i64");
    def(ops, s, "INIT_PRODUCER_ID", 0x0102, "", "producerId:i64 producerEpoch:u16");
    def(ops, s, "SUBSCRIBE", 0x0201,
        "subscriptionId:u32 " + tp + " start:u8 startValue:i64 durableName:string ackTimeoutMs:u32"
            + " creditMessages:u32 creditBytes:u32",
        "startOffset:i64 logStartOffset:i64 highWatermark:i64");
    def(ops, s, "DELIVER", 0x0202,
        "subscriptionId:u32 firstOffset:i64 redelivery:u8 records:bytes", "");
    def(ops, s, "CREDIT", 0x0203, "subscriptionId:u32 messages:u32 bytes:u32", "");
    def(ops, s, "ACK", 0x0204, "subscriptionId:u32 offset:i64", "");
    def(ops, s, "UNSUBSCRIBE", 0x0205, "subscriptionId:u32", "");
    def(ops, s, "FETCH", 0x0206, tp + " offset:i64 maxBytes:u32",
        "logStartOffset:i64 highWatermark:i64 records:bytes");
    def(ops, s, "DURABLE_COMMIT", 0x0207,
        "offsets:[" + tp + " name:string offset:i64 incarnation:i64]", "");
    def(ops, s, "DURABLE_FETCH", 0x0208, tp + " name:string", "offset:i64");
    def(ops, s, "CREATE_TOPIC", 0x0301, "name:string partitions:u32 configs:map", "");
    def(ops, s, "DELETE_TOPIC", 0x0302, "name:string", "");
    def(ops, s, "LIST_TOPICS", 0x0303, "", "topics:[name:string partitions:u32]");
    def(ops, s, "DESCRIBE_TOPIC", 0x0304, "name:string",
        "name:string configs:map partitions:[partition:u32 logStartOffset:i64 highWatermark:i64"
            + " sizeBytes:i64 subscribers:u32 damagedFromOffset:i64 leader:string replicas:" + ids
            + " isr:" + ids + " moving:u8]");
    def(ops, s, "ALTER_TOPIC", 0x0305, "name:string configs:map", "");
    def(ops, s, "CREATE_PARTITIONS", 0x0306, "name:string count:u32", "");
    def(ops, s, "REPAIR_PARTITIONS", 0x0307, "name:string partitions:[partition:u32]",
        "partitions:[partition:u32 cutOffset:i64 endOffset:i64 bytesDropped:i64 damage:string]");
    def(ops, s, "REASSIGN_PARTITION", 0x0308, "name:string partition:u32 replicas:" + ids, "");
    def(ops, s, "REBALANCE_LEADERS", 0x0309, "thisNodeOnly:u8",
        "moved:u32 waiting:u32 unreached:" + ids);
    def(ops, s, "GROUP_HEARTBEAT", 0x0401,
        "group:string memberId:string instanceId:string generation:i64 sessionTimeoutMs:u32"
            + " assignor:string topics:[name:string] owned:[" + tp + "]",
        "memberId:string generation:i64 heartbeatIntervalMs:u32 assigned:[" + tp + "] pending:u32");
    def(ops, s, "GROUP_LEAVE", 0x0402, "group:string memberId:string", "");
    def(ops, s, "OFFSET_COMMIT", 0x0403,
        "group:string memberId:string generation:i64 offsets:[" + tp + " offset:i64]", "");
    def(ops, s, "OFFSET_FETCH", 0x0404, "group:string partitions:[" + tp + "]", groupOffsets);
    def(ops, s, "LIST_GROUPS", 0x0405, "",
        "groups:[group:string state:string members:u32 generation:i64]");
    def(ops, s, "DESCRIBE_GROUP", 0x0406, "group:string",
        "group:string state:string generation:i64 assignor:string members:[memberId:string"
            + " instanceId:string clientId:string generation:i64 assigned:[" + tp + "]] "
            + groupOffsets);
    def(ops, s, "RESET_OFFSETS", 0x0407,
        "group:string topic:string partitions:[partition:u32] to:u8 value:i64 dryRun:u8",
        groupOffsets);
    def(ops, s, "CLUSTER_MEMBERS", 0x0501, "",
        "self:string members:[id:string host:string clusterPort:u32 clientPort:u32 state:string"
            + " incarnation:i64 heartbeat:i64]");
    def(ops, s, "METADATA", 0x0502, "topics:[name:string] autoCreate:u8",
        "nodes:[id:string host:string clientPort:u32] topics:[name:string error:u16"
            + " partitions:[partition:u32 leader:string replicas:" + ids + "]] controller:string");
    def(ops, s, "GOSSIP_SYN", 0x0601, "fromId:string " + digest, digest + " " + deltas);
    def(ops, s, "GOSSIP_ACK2", 0x0602, "fromId:string " + deltas, "");
    def(ops, s, "RAFT", 0x0603, "fromId:string messages:[group:string data:bytes]", "");
    def(ops, s, "CLUSTER_HELLO", 0x0604, "nodeId:string nonce:bytes", "nodeId:string nonce:bytes");
    def(ops, s, "CLUSTER_PROOF", 0x0605, "proof:bytes", "proof:bytes");
    def(ops, s, "USER_PUT", 0x0701,
        "name:string salt:bytes iterations:u32 storedKey:bytes serverKey:bytes", "");
    def(ops, s, "USER_DELETE", 0x0702, "name:string", "");
    def(ops, s, "USER_LIST", 0x0703, "",
        "users:[name:string mechanism:string iterations:u32]");
    def(ops, s, "ACL_ADD", 0x0704, acl, "");
    def(ops, s, "ACL_REMOVE", 0x0705, acl, "");
    def(ops, s, "ACL_LIST", 0x0706, "", "acls:[" + acl + "]");
    OPCODES = Collections.unmodifiableMap(ops);
    SCHEMAS = Collections.unmodifiableMap(s);
  }

  private static void def(Map<String, Integer> ops, Map<String, Schema[]> s, String name,
      int opcode, String request, String response) {
    ops.put(name, opcode);
    s.put(name, new Schema[] {Schema.of(request), Schema.of(response)});
    NAMES_BY_OPCODE.put(opcode, name);
  }

  /** The name of an opcode, or null if this SDK does not know it. */
  public static String opcodeName(int opcode) {
    return NAMES_BY_OPCODE.get(opcode);
  }

  /** The schema of a frame's payload, chosen by its opcode and flags. */
  public static Schema schemaFor(int opcode, int flags) {
    if ((flags & Frame.FLAG_ERROR) != 0) {
      return ERROR;
    }
    String name = NAMES_BY_OPCODE.get(opcode);
    if (name == null) {
      throw new GregorException(ErrorCode.UNKNOWN_OPCODE,
          String.format("opcode 0x%04x is not known to this SDK", opcode));
    }
    return SCHEMAS.get(name)[(flags & Frame.FLAG_RESPONSE) != 0 ? 1 : 0];
  }
}
