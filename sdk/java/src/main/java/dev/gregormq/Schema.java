package dev.gregormq;

import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A payload schema: fields in wire order. Integers decode to {@code Long} (u8, u16, u32, i64),
 * strings to {@code String}, bytes to {@code byte[]} or null, lists to {@code List<Map>} and maps
 * to {@code Map<String,String>}. docs/protocol.md is the spec; conformance/golden/schemas.json
 * is checked against these tables by the tests.
 */
public final class Schema {
  /** One field: its name, its kind (u8, u16, u32, i64, string, bytes, list, map), list items. */
  public record Field(String name, String kind, Schema items) {}

  private final List<Field> fields;

  private Schema(List<Field> fields) {
    this.fields = Collections.unmodifiableList(fields);
  }

  /** The fields in wire order. */
  public List<Field> fields() {
    return fields;
  }

  /**
   * Parses the compact notation used by the tables below: {@code name:kind} separated by spaces,
   * a list as {@code name:[ ... ]}, a map as {@code name:map}.
   */
  static Schema of(String spec) {
    int[] pos = {0};
    Schema s = parse(spec, pos);
    if (pos[0] != spec.length()) {
      throw new IllegalArgumentException("schema spec has an unmatched ']' at " + pos[0] + ": " + spec);
    }
    return s;
  }

  private static Schema parse(String spec, int[] pos) {
    List<Field> out = new ArrayList<>();
    while (pos[0] < spec.length()) {
      char c = spec.charAt(pos[0]);
      if (c == ' ') {
        pos[0]++;
        continue;
      }
      if (c == ']') {
        break;
      }
      int colon = spec.indexOf(':', pos[0]);
      String name = spec.substring(pos[0], colon);
      pos[0] = colon + 1;
      if (spec.charAt(pos[0]) == '[') {
        pos[0]++;
        Schema items = parse(spec, pos);
        pos[0]++; // the closing ']'
        out.add(new Field(name, "list", items));
      } else {
        int end = pos[0];
        while (end < spec.length() && spec.charAt(end) != ' ' && spec.charAt(end) != ']') {
          end++;
        }
        out.add(new Field(name, spec.substring(pos[0], end), null));
        pos[0] = end;
      }
    }
    return new Schema(out);
  }

  /** Renders the schema the way schemas.json writes it, for comparison. */
  public List<Object> toJsonShape() {
    List<Object> out = new ArrayList<>();
    for (Field f : fields) {
      Object type = f.kind();
      if (f.kind().equals("list")) {
        type = Map.of("list", f.items().toJsonShape());
      } else if (f.kind().equals("map")) {
        type = Map.of("map", true);
      }
      out.add(List.of(f.name(), type));
    }
    return out;
  }

  /** Keeps a field order for decoded payloads. */
  static Map<String, Object> newMsg() {
    return new LinkedHashMap<>();
  }
}
