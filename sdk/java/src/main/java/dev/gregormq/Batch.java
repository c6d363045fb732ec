package dev.gregormq;

import java.io.ByteArrayOutputStream;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;

/** A record batch (Kafka's v2 layout, docs/protocol.md "Record batches"): header and records. */
public record Batch(
    long baseOffset, int sizeBytes, int partitionLeaderEpoch, long crc, short attributes,
    Codec codec, int lastOffsetDelta, long firstTimestamp, long maxTimestamp, long producerId,
    short producerEpoch, int baseSequence, int recordCount, List<Record> records) {

  /** A record header; its value may be null. */
  public record Header(String key, byte[] value) {}

  /** One record: offset (set when decoded), timestamp in ms since the epoch, key, value. */
  public record Record(long offset, long timestamp, byte[] key, byte[] value, List<Header> headers) {}

  public static final int HEADER_BYTES = 61;
  private static final int LENGTH_PREFIX_BYTES = 12;
  private static final int OFF_CRC = 17;
  private static final int OFF_ATTRIBUTES = 21;
  private static final int OFF_BASE_SEQUENCE = 53;

  /** Encodes records into one batch; producerId -1 (epoch -1, sequence -1) unless idempotent. */
  public static byte[] encode(List<Record> records, Codec codec, long baseOffset, long producerId,
      short producerEpoch, int baseSequence) {
    if (records.isEmpty()) {
      throw new GregorException(ErrorCode.INVALID_REQUEST, "a batch needs at least one record");
    }
    long first = records.get(0).timestamp();
    long maxTs = first;
    ByteArrayOutputStream body = new ByteArrayOutputStream();
    for (int i = 0; i < records.size(); i++) {
      Record r = records.get(i);
      maxTs = Math.max(maxTs, r.timestamp());
      writeRecord(body, r, r.timestamp() - first, i);
    }
    byte[] section = codec.compress(body.toByteArray());
    ByteBuffer b = ByteBuffer.allocate(HEADER_BYTES + section.length);
    b.putLong(baseOffset).putInt(HEADER_BYTES + section.length - LENGTH_PREFIX_BYTES).putInt(-1)
        .put((byte) 2).putInt(0).putShort((short) codec.ordinal()).putInt(records.size() - 1)
        .putLong(first).putLong(maxTs).putLong(producerId).putShort(producerEpoch)
        .putInt(baseSequence).putInt(records.size()).put(section);
    byte[] out = b.array();
    b.putInt(OFF_CRC, (int) Frame.crc32c(out, OFF_ATTRIBUTES, out.length - OFF_ATTRIBUTES));
    return out;
  }

  /** Rewrites a batch's base sequence in place and recomputes its CRC. */
  static void setBaseSequence(byte[] batch, int sequence) {
    ByteBuffer b = ByteBuffer.wrap(batch);
    b.putInt(OFF_BASE_SEQUENCE, sequence);
    b.putInt(OFF_CRC, (int) Frame.crc32c(batch, OFF_ATTRIBUTES, batch.length - OFF_ATTRIBUTES));
  }

  private static void writeRecord(ByteArrayOutputStream out, Record r, long tsDelta, long offDelta) {
    ByteArrayOutputStream rec = new ByteArrayOutputStream();
    rec.write(0);
    varint(rec, tsDelta);
    varint(rec, offDelta);
    varBytes(rec, r.key());
    varBytes(rec, r.value());
    List<Header> hs = r.headers() == null ? List.of() : r.headers();
    varint(rec, hs.size());
    for (Header h : hs) {
      varBytes(rec, h.key().getBytes(StandardCharsets.UTF_8));
      varBytes(rec, h.value());
    }
    varint(out, rec.size());
    out.writeBytes(rec.toByteArray());
  }

  private static void varint(ByteArrayOutputStream out, long v) {
    long z = (v << 1) ^ (v >> 63);
    while ((z & ~0x7fL) != 0) {
      out.write((int) ((z & 0x7f) | 0x80));
      z >>>= 7;
    }
    out.write((int) z);
  }

  private static void varBytes(ByteArrayOutputStream out, byte[] b) {
    if (b == null) {
      varint(out, -1);
      return;
    }
    varint(out, b.length);
    out.writeBytes(b);
  }

  /**
   * Decodes batches back to back, checking each CRC-32C, its record count and offset deltas;
   * a batch whose records would decompress to over recordsBytesMax is CORRUPT_BATCH.
   */
  public static List<Batch> decodeAll(byte[] data, int recordsBytesMax) {
    List<Batch> out = new ArrayList<>();
    int pos = 0;
    while (pos < data.length) {
      Batch b = decodeOne(data, pos, recordsBytesMax);
      out.add(b);
      pos += b.sizeBytes();
    }
    return out;
  }

  private static Batch decodeOne(byte[] data, int pos, int recordsBytesMax) {
    int avail = data.length - pos;
    if (avail < HEADER_BYTES) {
      throw corrupt("batch of " + avail + " bytes is shorter than its header");
    }
    ByteBuffer b = ByteBuffer.wrap(data, pos, avail).slice();
    long size = (long) b.getInt(8) + LENGTH_PREFIX_BYTES;
    if (size < HEADER_BYTES || size > avail) {
      throw corrupt("batch length " + b.getInt(8) + " does not fit the " + avail + " bytes given");
    }
    if (b.get(16) != 2) {
      throw corrupt("batch magic " + b.get(16) + " is not 2");
    }
    short attrs = b.getShort(OFF_ATTRIBUTES);
    int codecBits = attrs & 0x07;
    if (codecBits >= Codec.values().length) {
      throw corrupt("unknown compression codec " + codecBits);
    }
    Codec codec = Codec.values()[codecBits];
    long crc = b.getInt(OFF_CRC) & 0xffffffffL;
    if (Frame.crc32c(data, pos + OFF_ATTRIBUTES, (int) size - OFF_ATTRIBUTES) != crc) {
      throw corrupt("batch at offset " + b.getLong(0) + " failed its CRC-32C check");
    }
    long baseOffset = b.getLong(0);
    int lastDelta = b.getInt(23);
    long firstTs = b.getLong(27);
    int count = b.getInt(57);
    if (count < 1 || lastDelta != count - 1) {
      throw corrupt("batch claims " + count + " records with last offset delta " + lastDelta);
    }
    byte[] section = new byte[(int) size - HEADER_BYTES];
    System.arraycopy(data, pos + HEADER_BYTES, section, 0, section.length);
    byte[] body = codec.decompress(section, recordsBytesMax);
    if (count > body.length) {
      throw corrupt("batch claims " + count + " records in " + body.length + " bytes");
    }
    Reader r = new Reader(body);
    List<Record> recs = new ArrayList<>(count);
    for (int i = 0; i < count; i++) {
      long length = r.varint("record " + i + " length");
      if (length < 1 || length > body.length - r.pos) {
        throw corrupt("record " + i + " length " + length + " is wrong");
      }
      int end = r.pos + (int) length;
      r.pos++; // attributes
      r.limit = end;
      long tsDelta = r.varint("record " + i + " timestamp");
      long offDelta = r.varint("record " + i + " offset delta");
      if (offDelta != i) {
        throw corrupt("record " + i + " has offset delta " + offDelta);
      }
      byte[] key = r.varBytes("record " + i + " key");
      byte[] value = r.varBytes("record " + i + " value");
      long nh = r.varint("record " + i + " header count");
      if (nh < 0 || nh > end - r.pos) {
        throw corrupt("record " + i + " header count " + nh + " is wrong");
      }
      List<Header> headers = new ArrayList<>();
      for (long k = 0; k < nh; k++) {
        byte[] hk = r.varBytes("record " + i + " header key");
        if (hk == null) {
          throw corrupt("record " + i + " header " + k + " key is null");
        }
        headers.add(new Header(new String(hk, StandardCharsets.UTF_8), r.varBytes("header value")));
      }
      if (r.pos != end) {
        throw corrupt("record " + i + " is " + length + " bytes long but its fields take "
            + (length - (end - r.pos)));
      }
      r.limit = body.length;
      recs.add(new Record(baseOffset + i, firstTs + tsDelta, key, value, headers));
    }
    if (r.pos != body.length) {
      throw corrupt((body.length - r.pos) + " unexpected bytes after the batch's records");
    }
    return new Batch(baseOffset, (int) size, b.getInt(12), crc, attrs, codec, lastDelta, firstTs,
        b.getLong(35), b.getLong(43), b.getShort(51), b.getInt(53), count, List.copyOf(recs));
  }

  private static final class Reader {
    final byte[] b;
    int pos;
    int limit;

    Reader(byte[] b) {
      this.b = b;
      this.limit = b.length;
    }

    long varint(String what) {
      long z = 0;
      for (int shift = 0; shift < 64; shift += 7) {
        if (pos >= limit) {
          throw corrupt(what + " is cut off");
        }
        int x = b[pos++] & 0xff;
        z |= (long) (x & 0x7f) << shift;
        if ((x & 0x80) == 0) {
          return (z >>> 1) ^ -(z & 1);
        }
      }
      throw corrupt(what + " is a varint over 10 bytes");
    }

    byte[] varBytes(String what) {
      long n = varint(what);
      if (n == -1) {
        return null;
      }
      if (n < -1 || n > limit - pos) {
        throw corrupt(what + " length " + n + " is wrong");
      }
      byte[] out = new byte[(int) n];
      System.arraycopy(b, pos, out, 0, (int) n);
      pos += (int) n;
      return out;
    }
  }

  private static GregorException corrupt(String message) {
    return new GregorException(ErrorCode.CORRUPT_BATCH, message);
  }

  /** Kafka's murmur2 (seed 0x9747b28c) as a signed 32-bit integer. */
  public static int murmur2(byte[] data) {
    final int m = 0x5bd1e995;
    int n = data.length;
    int h = 0x9747b28c ^ n;
    int whole = n & ~3;
    for (int i = 0; i < whole; i += 4) {
      int k = (data[i] & 0xff) | (data[i + 1] & 0xff) << 8 | (data[i + 2] & 0xff) << 16
          | (data[i + 3] & 0xff) << 24;
      k *= m;
      k ^= k >>> 24;
      k *= m;
      h = h * m ^ k;
    }
    switch (n & 3) {
      case 3:
        h ^= (data[whole + 2] & 0xff) << 16;
        // fall through
      case 2:
        h ^= (data[whole + 1] & 0xff) << 8;
        // fall through
      case 1:
        h ^= data[whole] & 0xff;
        h *= m;
        break;
      default:
        break;
    }
    h ^= h >>> 13;
    h *= m;
    h ^= h >>> 15;
    return h;
  }

  /** The partition a keyed record goes to: (murmur2 & 0x7fffffff) % partitions. */
  public static int partitionForKey(byte[] key, int partitions) {
    return (murmur2(key) & 0x7fffffff) % partitions;
  }
}
