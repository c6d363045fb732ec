package dev.gregormq;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/** The language-neutral corpus in conformance/: golden frames, schemas, murmur2 vectors. */
class GoldenTest {
  static final ObjectMapper JSON = new ObjectMapper();
  static final HexFormat HEX = HexFormat.of();

  static Path conformance() {
    return Path.of(System.getProperty("gregormq.repo", "../.."), "conformance");
  }

  static JsonNode load(String file) throws IOException {
    return JSON.readTree(conformance().resolve(file).toFile());
  }

  static byte[] golden(JsonNode c) throws IOException {
    String text = Files.readString(conformance().resolve("golden").resolve(c.get("file").asText()));
    return HEX.parseHex(text.strip());
  }

  static List<JsonNode> cases() throws IOException {
    List<JsonNode> out = new ArrayList<>();
    load("golden/index.json").get("cases").forEach(out::add);
    assertTrue(out.size() >= 20, "index.json has " + out.size() + " cases, want at least 20");
    return out;
  }

  /** Through text and back, so numbers compare by value whatever Java type held them. */
  static JsonNode norm(Object v) throws IOException {
    return JSON.readTree(JSON.writeValueAsString(v));
  }

  static boolean carriesBatches(String field) {
    return field.equals("batch") || field.equals("records");
  }

  static String hexOrNull(byte[] b) {
    return b == null ? null : HEX.formatHex(b);
  }

  /** A decoded payload rendered the way index.json writes it. */
  @SuppressWarnings("unchecked")
  static Map<String, Object> toJson(Schema s, Map<String, Object> m) {
    Map<String, Object> out = new LinkedHashMap<>();
    for (Schema.Field f : s.fields()) {
      Object x = m.get(f.name());
      switch (f.kind()) {
        case "bytes" -> {
          byte[] b = (byte[]) x;
          if (b != null && carriesBatches(f.name())) {
            List<Object> batches = new ArrayList<>();
            for (Batch bt : Batch.decodeAll(b, 1 << 20)) {
              List<Object> recs = new ArrayList<>();
              for (Batch.Record r : bt.records()) {
                List<Object> hs = new ArrayList<>();
                for (Batch.Header h : r.headers()) {
                  Map<String, Object> hm = new LinkedHashMap<>();
                  hm.put("key", h.key());
                  hm.put("value", hexOrNull(h.value()));
                  hs.add(hm);
                }
                Map<String, Object> rm = new LinkedHashMap<>();
                rm.put("offset", r.offset());
                rm.put("timestamp", r.timestamp());
                rm.put("key", hexOrNull(r.key()));
                rm.put("value", hexOrNull(r.value()));
                rm.put("headers", hs);
                recs.add(rm);
              }
              Map<String, Object> bm = new LinkedHashMap<>();
              bm.put("baseOffset", bt.baseOffset());
              bm.put("sizeBytes", bt.sizeBytes());
              bm.put("partitionLeaderEpoch", bt.partitionLeaderEpoch());
              bm.put("crc", bt.crc());
              bm.put("attributes", bt.attributes());
              bm.put("codec", bt.codec().wireName());
              bm.put("lastOffsetDelta", bt.lastOffsetDelta());
              bm.put("firstTimestamp", bt.firstTimestamp());
              bm.put("maxTimestamp", bt.maxTimestamp());
              bm.put("producerId", bt.producerId());
              bm.put("producerEpoch", bt.producerEpoch());
              bm.put("baseSequence", bt.baseSequence());
              bm.put("recordCount", bt.recordCount());
              bm.put("records", recs);
              batches.add(bm);
            }
            out.put(f.name(), Map.of("hex", HEX.formatHex(b), "batches", batches));
          } else {
            out.put(f.name(), hexOrNull(b));
          }
        }
        case "list" -> {
          List<Object> items = new ArrayList<>();
          for (Map<String, Object> it : (List<Map<String, Object>>) x) {
            items.add(toJson(f.items(), it));
          }
          out.put(f.name(), items);
        }
        default -> out.put(f.name(), x);
      }
    }
    return out;
  }

  /** index.json's payload turned back into a message for Payload.encode. */
  static Map<String, Object> fromJson(Schema s, JsonNode v) {
    Map<String, Object> m = new LinkedHashMap<>();
    for (Schema.Field f : s.fields()) {
      JsonNode x = v.get(f.name());
      switch (f.kind()) {
        case "bytes" -> {
          if (x == null || x.isNull()) {
            m.put(f.name(), null);
          } else {
            m.put(f.name(), HEX.parseHex(x.isTextual() ? x.asText() : x.get("hex").asText()));
          }
        }
        case "string" -> m.put(f.name(), x.asText());
        case "list" -> {
          List<Map<String, Object>> items = new ArrayList<>();
          x.forEach(it -> items.add(fromJson(f.items(), it)));
          m.put(f.name(), items);
        }
        case "map" -> {
          Map<String, String> mm = new TreeMap<>();
          Iterator<Map.Entry<String, JsonNode>> it = x.fields();
          while (it.hasNext()) {
            Map.Entry<String, JsonNode> e = it.next();
            mm.put(e.getKey(), e.getValue().asText());
          }
          m.put(f.name(), mm);
        }
        default -> m.put(f.name(), x.asLong());
      }
    }
    return m;
  }

  @TestFactory
  Stream<DynamicTest> goldenFramesDecodeToIndex() throws IOException {
    return cases().stream().map(c -> DynamicTest.dynamicTest(c.get("name").asText(), () -> {
      Frame f = Frame.decode(golden(c), Frame.PAYLOAD_BYTES_MAX_DEFAULT);
      assertEquals(c.get("opcode").asInt(), f.opcode());
      assertEquals(c.get("flags").asInt(), f.flags());
      assertEquals(c.get("correlationId").asLong(), f.correlationId());
      assertEquals(c.get("payloadLength").asInt(), f.payload().length);
      Schema s = Protocol.schemaFor(f.opcode(), f.flags());
      Map<String, Object> got = toJson(s, Payload.decode(s, f.payload()));
      assertEquals(c.get("payload"), norm(got));
    }));
  }

  @TestFactory
  Stream<DynamicTest> goldenFramesReencodeByteForByte() throws IOException {
    return cases().stream().map(c -> DynamicTest.dynamicTest(c.get("name").asText(), () -> {
      Schema s = Protocol.schemaFor(c.get("opcode").asInt(), c.get("flags").asInt());
      byte[] payload = Payload.encode(s, fromJson(s, c.get("payload")));
      Frame f = new Frame(c.get("flags").asInt(), c.get("opcode").asInt(),
          c.get("correlationId").asLong(), payload);
      assertEquals(HEX.formatHex(golden(c)), HEX.formatHex(f.encode()));
    }));
  }

  /**
   * Every uncompressed batch re-encodes from its records byte for byte; a compressed one
   * round-trips through this SDK's compressor and holds the same records section.
   */
  @Test
  void goldenBatchesReencode() throws IOException {
    int n = 0;
    for (JsonNode c : cases()) {
      Frame f = Frame.decode(golden(c), Frame.PAYLOAD_BYTES_MAX_DEFAULT);
      Map<String, Object> m = Payload.decode(Protocol.schemaFor(f.opcode(), f.flags()), f.payload());
      for (String field : List.of("batch", "records")) {
        byte[] b = m.get(field) instanceof byte[] bytes ? bytes : new byte[0];
        int pos = 0;
        for (Batch bt : Batch.decodeAll(b, 1 << 20)) {
          byte[] whole = java.util.Arrays.copyOfRange(b, pos, pos + bt.sizeBytes());
          byte[] plain = Batch.encode(bt.records(), Codec.NONE, bt.baseOffset(), bt.producerId(),
              bt.producerEpoch(), bt.baseSequence());
          if (bt.codec() == Codec.NONE) {
            assertArrayEquals(whole, plain, c.get("name").asText());
          } else {
            byte[] mine = Batch.encode(bt.records(), bt.codec(), bt.baseOffset(), bt.producerId(),
                bt.producerEpoch(), bt.baseSequence());
            Batch again = Batch.decodeAll(mine, 1 << 20).get(0);
            assertEquals(render(bt.records()), render(again.records()));
            byte[] inner = bt.codec().decompress(
                java.util.Arrays.copyOfRange(whole, Batch.HEADER_BYTES, whole.length), 1 << 20);
            assertArrayEquals(java.util.Arrays.copyOfRange(plain, Batch.HEADER_BYTES, plain.length), inner);
          }
          pos += bt.sizeBytes();
          n++;
        }
      }
    }
    assertTrue(n >= 8, "checked " + n + " batches, want at least 8");
  }

  static String render(List<Batch.Record> recs) {
    StringBuilder sb = new StringBuilder();
    for (Batch.Record r : recs) {
      sb.append(r.offset()).append('/').append(r.timestamp()).append('/').append(hexOrNull(r.key()))
          .append('/').append(hexOrNull(r.value())).append('/').append(r.headers().size()).append(';');
    }
    return sb.toString();
  }

  @Test
  void schemasMatchConformance() throws IOException {
    JsonNode doc = load("golden/schemas.json");
    Iterator<Map.Entry<String, JsonNode>> codes = doc.get("errorCodes").fields();
    int count = 0;
    while (codes.hasNext()) {
      Map.Entry<String, JsonNode> e = codes.next();
      assertEquals(e.getValue().asInt(), ErrorCode.valueOf(e.getKey()).code(), e.getKey());
      count++;
    }
    assertEquals(count, ErrorCode.values().length, "error code count");
    assertEquals(doc.get("opcodes").size(), Protocol.OPCODES.size(), "opcode count");
    for (Map.Entry<String, Integer> e : Protocol.OPCODES.entrySet()) {
      assertEquals(doc.get("opcodes").get(e.getKey()).asInt(), e.getValue(), e.getKey());
      JsonNode want = doc.get("schemas").get(e.getKey());
      assertNotNull(want, e.getKey());
      Schema[] s = Protocol.SCHEMAS.get(e.getKey());
      assertEquals(want.get("request"), norm(s[0].toJsonShape()), e.getKey() + " request");
      assertEquals(want.get("response"), norm(s[1].toJsonShape()), e.getKey() + " response");
    }
    assertEquals(doc.get("schemas").get("ERROR"), norm(Protocol.ERROR.toJsonShape()));
  }

  @Test
  void murmur2Vectors() throws IOException {
    JsonNode doc = load("murmur2.json");
    assertTrue(doc.get("vectors").size() >= 10);
    for (JsonNode v : doc.get("vectors")) {
      byte[] key = v.get("key").asText().getBytes(StandardCharsets.UTF_8);
      assertEquals(v.get("murmur2").asInt(), Batch.murmur2(key), v.get("key").asText());
      Iterator<Map.Entry<String, JsonNode>> it = v.get("partitions").fields();
      while (it.hasNext()) {
        Map.Entry<String, JsonNode> e = it.next();
        assertEquals(e.getValue().asInt(), Batch.partitionForKey(key, Integer.parseInt(e.getKey())));
      }
    }
  }

  @Test
  void crc32cCheckValue() {
    byte[] b = "123456789".getBytes(StandardCharsets.US_ASCII);
    assertEquals(0xe3069283L, Frame.crc32c(b, 0, b.length));
  }

  @Test
  void decompressionIsBounded() {
    byte[] big = new byte[1 << 20];
    for (Codec c : List.of(Codec.GZIP, Codec.SNAPPY, Codec.LZ4, Codec.ZSTD)) {
      byte[] packed = c.compress(big);
      GregorException e = assertThrows(GregorException.class, () -> c.decompress(packed, 1024));
      assertEquals(ErrorCode.CORRUPT_BATCH, e.errorCode(), c.toString());
      assertEquals(big.length, c.decompress(packed, big.length).length, c.toString());
    }
  }
}
