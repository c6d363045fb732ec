// snappyjs ships no types; the client narrows what it calls itself (src/protocol/compression.ts).
declare const snappyjs: unknown;
export = snappyjs;
