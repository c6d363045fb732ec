package dev.gregormq;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.ByteBuffer;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * Bytes from a broker (or anything posing as one) never throw anything but a GregorException
 * with a protocol code, and a claimed length is checked against the bytes there before anything
 * is allocated for it.
 */
class HostileInputTest {
  /** Mutated frames tried per golden case: bounded so the test stays well under a second each. */
  static final int MUTATIONS_PER_CASE = 300;

  @Test
  void aHugeBytesLengthIsRefusedBeforeItIsAllocated() {
    ByteBuffer b = ByteBuffer.allocate(4).putInt(0x7ffffff0);
    Schema s = Protocol.SCHEMAS.get("AUTH_FINISH")[0];
    GregorException e = assertThrows(GregorException.class, () -> Payload.decode(s, b.array()));
    assertEquals(ErrorCode.MALFORMED_REQUEST, e.errorCode());
    assertTrue(e.getMessage().contains("message"), e.getMessage());
  }

  @Test
  void mutatedGoldenFramesFailOnlyWithProtocolErrors() throws Exception {
    Random random = new Random(20261206);
    Set<ErrorCode> allowed = Set.of(ErrorCode.MALFORMED_FRAME, ErrorCode.MALFORMED_REQUEST,
        ErrorCode.CORRUPT_BATCH, ErrorCode.UNKNOWN_OPCODE, ErrorCode.UNSUPPORTED_VERSION,
        ErrorCode.FRAME_TOO_LARGE);
    int refused = 0;
    for (JsonNode c : GoldenTest.cases()) {
      byte[] golden = GoldenTest.golden(c);
      for (int i = 0; i < MUTATIONS_PER_CASE; i++) {
        byte[] b = golden.clone();
        for (int k = 1 + random.nextInt(4); k > 0; k--) {
          b[random.nextInt(b.length)] = (byte) random.nextInt(256);
        }
        // Most mutations break the header CRC; re-sealing it reaches the payload decoder.
        if (random.nextBoolean() && b.length >= Frame.HEADER_BYTES) {
          ByteBuffer.wrap(b).putInt(16, (int) Frame.crc32c(b, 0, 16));
        }
        try {
          Frame f = Frame.decode(b, Frame.PAYLOAD_BYTES_MAX_DEFAULT);
          Map<String, Object> m = Payload.decode(Protocol.schemaFor(f.opcode(), f.flags()), f.payload());
          for (String field : List.of("batch", "records")) {
            if (m.get(field) instanceof byte[] batches) {
              Batch.decodeAll(batches, 1 << 20);
            }
          }
        } catch (GregorException e) {
          assertTrue(allowed.contains(e.errorCode()), c.get("name").asText() + ": " + e);
          refused++;
        }
      }
    }
    assertTrue(refused > 1000, "only " + refused + " mutations were refused: the test mutates too little");
  }
}
