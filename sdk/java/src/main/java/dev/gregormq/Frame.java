package dev.gregormq;

import java.io.DataInputStream;
import java.io.EOFException;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.util.zip.CRC32C;

/** One protocol frame: a 20-byte header (with its own CRC-32C) and a payload. */
public record Frame(int flags, int opcode, long correlationId, byte[] payload) {
  public static final int MAGIC = 0x474d;
  public static final int HEADER_BYTES = 20;
  public static final int FLAG_RESPONSE = 0x01;
  public static final int FLAG_ERROR = 0x02;
  public static final int FLAG_PUSH = 0x04;
  /** The largest payload accepted before the broker's HELLO answer says otherwise. */
  public static final int PAYLOAD_BYTES_MAX_DEFAULT = 16 * 1024 * 1024;

  /** CRC-32C (Castagnoli) of a byte range. */
  public static long crc32c(byte[] b, int off, int len) {
    CRC32C c = new CRC32C();
    c.update(b, off, len);
    return c.getValue();
  }

  /** The whole frame, header and payload. */
  public byte[] encode() {
    ByteBuffer b = ByteBuffer.allocate(HEADER_BYTES + payload.length);
    b.putShort((short) MAGIC).put((byte) Protocol.VERSION).put((byte) flags)
        .putShort((short) opcode).putShort((short) 0).putInt((int) correlationId)
        .putInt(payload.length);
    b.putInt((int) crc32c(b.array(), 0, 16));
    b.put(payload);
    return b.array();
  }

  /** Decodes one whole frame (a byte array holding exactly one frame). */
  public static Frame decode(byte[] whole, int payloadBytesMax) {
    if (whole.length < HEADER_BYTES) {
      throw malformed("frame of " + whole.length + " bytes is shorter than its 20-byte header");
    }
    int n = checkHeader(whole, payloadBytesMax);
    if (whole.length - HEADER_BYTES != n) {
      throw malformed("frame says " + n + " payload bytes but " + (whole.length - HEADER_BYTES)
          + " follow");
    }
    byte[] payload = new byte[n];
    System.arraycopy(whole, HEADER_BYTES, payload, 0, n);
    return fromHeader(whole, payload);
  }

  /** Reads one frame from a stream; EOFException at a clean end. */
  public static Frame read(InputStream in, int payloadBytesMax) throws IOException {
    DataInputStream din = in instanceof DataInputStream d ? d : new DataInputStream(in);
    byte[] h = new byte[HEADER_BYTES];
    int first = din.read(h, 0, 1);
    if (first < 0) {
      throw new EOFException("the broker closed the connection");
    }
    din.readFully(h, 1, HEADER_BYTES - 1);
    int n = checkHeader(h, payloadBytesMax);
    byte[] payload = new byte[n];
    din.readFully(payload);
    return fromHeader(h, payload);
  }

  private static Frame fromHeader(byte[] h, byte[] payload) {
    ByteBuffer b = ByteBuffer.wrap(h);
    return new Frame(h[3] & 0xff, b.getShort(4) & 0xffff, b.getInt(8) & 0xffffffffL, payload);
  }

  private static int checkHeader(byte[] h, int payloadBytesMax) {
    ByteBuffer b = ByteBuffer.wrap(h);
    int magic = b.getShort(0) & 0xffff;
    if (magic != MAGIC) {
      throw malformed(String.format("frame magic is 0x%04x, not 0x474d", magic));
    }
    long got = b.getInt(16) & 0xffffffffL;
    long want = crc32c(h, 0, 16);
    if (got != want) {
      throw malformed(String.format("frame header checksum 0x%08x does not match 0x%08x", got, want));
    }
    if (h[2] != Protocol.VERSION) {
      throw new GregorException(ErrorCode.UNSUPPORTED_VERSION, "frame version is " + h[2] + ", not 1");
    }
    if (b.getShort(6) != 0) {
      throw malformed("frame reserved bytes are not zero");
    }
    long n = b.getInt(12) & 0xffffffffL;
    if (n > payloadBytesMax) {
      throw new GregorException(ErrorCode.FRAME_TOO_LARGE,
          "frame payload of " + n + " bytes is over " + payloadBytesMax);
    }
    return (int) n;
  }

  private static GregorException malformed(String message) {
    return new GregorException(ErrorCode.MALFORMED_FRAME, message);
  }
}
