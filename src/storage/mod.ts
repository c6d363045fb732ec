// The storage folder's public face: the Log interface and its errors, and its twins — MemoryLog
// (memory only) and FileLog (segment files on a Disk).

export * from "./log.ts";
export * from "./memory_log.ts";
export * from "./file_log.ts";
