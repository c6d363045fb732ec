package dev.gregormq;

import com.github.luben.zstd.Zstd;
import com.github.luben.zstd.ZstdInputStream;
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.zip.GZIPInputStream;
import java.util.zip.GZIPOutputStream;
import net.jpountz.lz4.LZ4Compressor;
import net.jpountz.lz4.LZ4Factory;
import net.jpountz.lz4.LZ4SafeDecompressor;
import org.xerial.snappy.Snappy;

/**
 * A batch's compression codec (attributes bits 0-2). Each compresses the records section alone:
 * gzip, raw snappy, an LZ4 block behind its little-endian u32 uncompressed length, a zstd frame.
 */
public enum Codec {
  NONE, GZIP, SNAPPY, LZ4, ZSTD;

  /** The codec's name in lower case, as the conformance suite writes it. */
  public String wireName() {
    return name().toLowerCase();
  }

  /** The codec by its lower-case name, or null. */
  public static Codec byName(String name) {
    for (Codec c : values()) {
      if (c.wireName().equals(name)) {
        return c;
      }
    }
    return null;
  }

  byte[] compress(byte[] src) {
    try {
      switch (this) {
        case NONE:
          return src;
        case GZIP: {
          ByteArrayOutputStream out = new ByteArrayOutputStream();
          try (GZIPOutputStream gz = new GZIPOutputStream(out)) {
            gz.write(src);
          }
          return out.toByteArray();
        }
        case SNAPPY:
          return Snappy.compress(src);
        case LZ4: {
          LZ4Compressor c = LZ4Factory.fastestInstance().fastCompressor();
          byte[] out = new byte[4 + c.maxCompressedLength(src.length)];
          ByteBuffer.wrap(out).order(ByteOrder.LITTLE_ENDIAN).putInt(src.length);
          int n = c.compress(src, 0, src.length, out, 4);
          byte[] exact = new byte[4 + n];
          System.arraycopy(out, 0, exact, 0, exact.length);
          return exact;
        }
        case ZSTD:
          return Zstd.compress(src);
        default:
          throw new IllegalStateException("codec " + this + " has no compressor");
      }
    } catch (IOException e) {
      throw new GregorException(ErrorCode.INTERNAL, "cannot compress with " + wireName() + ": " + e);
    }
  }

  /** Decompresses, refusing output over outMax bytes before producing it (no zip bombs). */
  byte[] decompress(byte[] src, int outMax) {
    try {
      switch (this) {
        case NONE:
          if (src.length > outMax) {
            throw corrupt("records of " + src.length + " bytes are over " + outMax);
          }
          return src;
        case GZIP:
          return readBounded(new GZIPInputStream(new ByteArrayInputStream(src)), outMax);
        case SNAPPY: {
          if (!Snappy.isValidCompressedBuffer(src)) {
            throw corrupt("snappy data is not valid");
          }
          int n = Snappy.uncompressedLength(src);
          if (n < 0 || n > outMax) {
            throw corrupt("snappy output of " + n + " bytes is over the limit of " + outMax);
          }
          return Snappy.uncompress(src);
        }
        case LZ4: {
          if (src.length < 4) {
            throw corrupt("lz4 data of " + src.length + " bytes has no length prefix");
          }
          int n = ByteBuffer.wrap(src).order(ByteOrder.LITTLE_ENDIAN).getInt();
          if (n < 0 || n > outMax) {
            throw corrupt("lz4 output of " + Integer.toUnsignedString(n)
                + " bytes is over the limit of " + outMax);
          }
          LZ4SafeDecompressor d = LZ4Factory.fastestInstance().safeDecompressor();
          byte[] out = new byte[n];
          int got = d.decompress(src, 4, src.length - 4, out, 0, n);
          if (got != n) {
            throw corrupt("lz4 block gave " + got + " bytes, its prefix says " + n);
          }
          return out;
        }
        case ZSTD:
          return readBounded(new ZstdInputStream(new ByteArrayInputStream(src)), outMax);
        default:
          throw corrupt("codec " + this + " has no decompressor");
      }
    } catch (GregorException e) {
      throw e;
    } catch (IOException | RuntimeException e) {
      throw corrupt("cannot decompress " + wireName() + ": " + e.getMessage());
    }
  }

  private static byte[] readBounded(InputStream in, int outMax) throws IOException {
    try (in) {
      byte[] out = in.readNBytes(outMax);
      if (in.read() >= 0) {
        throw corrupt(" output is over the limit of " + outMax + " bytes");
      }
      return out;
    }
  }

  private static GregorException corrupt(String message) {
    return new GregorException(ErrorCode.CORRUPT_BATCH, message);
  }
}
