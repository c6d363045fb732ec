package dev.gregormq;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** Encodes and decodes payloads by schema. Integers are longs; lists are lists of maps. */
public final class Payload {
  private Payload() {}

  /** Most items a decoded list or map may claim, so a hostile count cannot exhaust memory. */
  public static final int LIST_ITEMS_MAX = 100_000;
  /** The longest string on the wire (its length is a u16). */
  public static final int STRING_BYTES_MAX = 65_535;

  /** Encodes a message; a missing integer is 0, a missing string "", missing bytes null. */
  public static byte[] encode(Schema s, Map<String, ?> msg) {
    ByteArrayOutputStream out = new ByteArrayOutputStream();
    write(out, s, msg);
    return out.toByteArray();
  }

  @SuppressWarnings("unchecked")
  private static void write(ByteArrayOutputStream out, Schema s, Map<String, ?> msg) {
    for (Schema.Field f : s.fields()) {
      Object x = msg.get(f.name());
      switch (f.kind()) {
        case "u8", "u16", "u32", "i64" -> writeInt(out, f, x == null ? 0 : ((Number) x).longValue());
        case "string" -> writeString(out, f.name(), x == null ? "" : (String) x);
        case "bytes" -> {
          byte[] b = (byte[]) x;
          if (b == null) {
            writeU32(out, 0xffffffffL);
          } else {
            writeU32(out, b.length);
            out.writeBytes(b);
          }
        }
        case "list" -> {
          List<Map<String, ?>> items = x == null ? List.of() : (List<Map<String, ?>>) x;
          writeU32(out, items.size());
          for (Map<String, ?> it : items) {
            write(out, f.items(), it);
          }
        }
        case "map" -> {
          Map<String, String> m = new TreeMap<>(x == null ? Map.of() : (Map<String, String>) x);
          writeU32(out, m.size());
          for (Map.Entry<String, String> e : m.entrySet()) {
            writeString(out, f.name(), e.getKey());
            writeString(out, f.name(), e.getValue());
          }
        }
        default -> throw new IllegalArgumentException("field " + f.name() + " has unknown kind " + f.kind());
      }
    }
  }

  private static void writeInt(ByteArrayOutputStream out, Schema.Field f, long v) {
    int bytes;
    long max;
    switch (f.kind()) {
      case "u8" -> { bytes = 1; max = 0xffL; }
      case "u16" -> { bytes = 2; max = 0xffffL; }
      case "u32" -> { bytes = 4; max = 0xffffffffL; }
      default -> { bytes = 8; max = -1; }
    }
    if (max >= 0 && (v < 0 || v > max)) {
      throw new IllegalArgumentException("field " + f.name() + " is " + v + ", outside " + f.kind());
    }
    for (int i = bytes - 1; i >= 0; i--) {
      out.write((int) (v >>> (8 * i)));
    }
  }

  private static void writeU32(ByteArrayOutputStream out, long v) {
    for (int i = 3; i >= 0; i--) {
      out.write((int) (v >>> (8 * i)));
    }
  }

  private static void writeString(ByteArrayOutputStream out, String name, String s) {
    byte[] b = s.getBytes(StandardCharsets.UTF_8);
    if (b.length > STRING_BYTES_MAX) {
      throw new IllegalArgumentException("field " + name + " is a string of " + b.length
          + " bytes, over " + STRING_BYTES_MAX);
    }
    out.write(b.length >>> 8);
    out.write(b.length);
    out.writeBytes(b);
  }

  /**
   * Decodes a whole payload strictly: a short payload, bytes left over or invalid UTF-8 is a
   * MALFORMED_REQUEST error naming the field.
   */
  public static Map<String, Object> decode(Schema s, byte[] payload) {
    ByteBuffer b = ByteBuffer.wrap(payload);
    Map<String, Object> m = read(b, s, "");
    if (b.hasRemaining()) {
      throw bad(b.remaining() + " bytes left over after the payload's last field");
    }
    return m;
  }

  private static Map<String, Object> read(ByteBuffer b, Schema s, String prefix) {
    Map<String, Object> m = Schema.newMsg();
    for (Schema.Field f : s.fields()) {
      String what = prefix + f.name();
      switch (f.kind()) {
        case "u8" -> m.put(f.name(), (long) (need(b, 1, what).get() & 0xff));
        case "u16" -> m.put(f.name(), (long) (need(b, 2, what).getShort() & 0xffff));
        case "u32" -> m.put(f.name(), need(b, 4, what).getInt() & 0xffffffffL);
        case "i64" -> m.put(f.name(), need(b, 8, what).getLong());
        case "string" -> m.put(f.name(), readString(b, what));
        case "bytes" -> {
          long n = need(b, 4, what).getInt() & 0xffffffffL;
          if (n == 0xffffffffL) {
            m.put(f.name(), null);
          } else {
            need(b, n, what); // before allocating: the length is the sender's claim
            byte[] v = new byte[(int) n];
            b.get(v);
            m.put(f.name(), v);
          }
        }
        case "list" -> {
          long n = count(b, what);
          List<Map<String, Object>> items = new ArrayList<>((int) Math.min(n, 1024));
          for (long i = 0; i < n; i++) {
            items.add(read(b, f.items(), what + "[" + i + "]."));
          }
          m.put(f.name(), items);
        }
        case "map" -> {
          long n = count(b, what);
          Map<String, String> out = new TreeMap<>();
          for (long i = 0; i < n; i++) {
            String k = readString(b, what + " key");
            out.put(k, readString(b, what + "[" + k + "]"));
          }
          m.put(f.name(), out);
        }
        default -> throw new IllegalArgumentException("field " + what + " has unknown kind " + f.kind());
      }
    }
    return m;
  }

  private static long count(ByteBuffer b, String what) {
    long n = need(b, 4, what + " count").getInt() & 0xffffffffL;
    if (n > LIST_ITEMS_MAX) {
      throw bad(what + " has " + n + " items, over " + LIST_ITEMS_MAX);
    }
    return n;
  }

  private static String readString(ByteBuffer b, String what) {
    int n = need(b, 2, what).getShort() & 0xffff;
    byte[] v = new byte[n];
    need(b, n, what).get(v);
    try {
      return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(v)).toString();
    } catch (CharacterCodingException e) {
      throw bad(what + " is not valid UTF-8");
    }
  }

  private static ByteBuffer need(ByteBuffer b, long n, String what) {
    if (b.remaining() < n) {
      throw bad("payload ends inside " + what + ": needs " + n + " bytes, " + b.remaining() + " left");
    }
    return b;
  }

  private static GregorException bad(String message) {
    return new GregorException(ErrorCode.MALFORMED_REQUEST, message);
  }
}
