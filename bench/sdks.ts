// Every SDK side by side in one run against one broker: the TypeScript client on Deno and on Node,
// Go, Python and Java, produce of 100 B and produce→consume (bench/_sdk_compare.ts says what runs
// and what is printed). `deno task bench:sdks [--count N] [--runs N] [--window N] [--size N]`.

import { compareSdks } from "./_sdk_compare.ts";
import { goSide } from "./go_sdk.ts";
import { javaSide } from "./java_sdk.ts";
import { pythonSide } from "./python_sdk.ts";

await compareSdks([goSide, pythonSide, javaSide]);
