// One client connection: reads frames, enforces the handshake, dispatches requests (pipelined,
// answered by correlation id), and writes responses and pushes through one bounded queue. A broken
// or hostile peer costs only its own connection.

import { GUARD_DONE } from "../io/errors.ts";
import { type AclEntry, aclProblem, type Operation, type ResourceType } from "../auth/acl.ts";
import { credentialProblem } from "../auth/store.ts";
import {
  parseClientFirst,
  SCRAM_SHA_256,
  ScramError,
  ScramServer,
  toBase64,
} from "../auth/scram.ts";
import type { Conn } from "../io/types.ts";
import { writeAllOf } from "../io/util.ts";
import { CODEC_NAMES } from "../protocol/codecs.ts";
import { ErrorCode, errorName, FATAL_CODES, GregorError } from "../protocol/errors.ts";
import {
  Flag,
  type Frame,
  FrameParser,
  HEADER_BYTES,
  PROTOCOL_VERSION,
  writeHeader,
} from "../protocol/frame.ts";
import {
  Acks,
  type AclWire,
  type AlterTopicRequest,
  type AuthMessage,
  type AuthStartRequest,
  type CreatePartitionsRequest,
  type CreateTopicRequest,
  type CreditRequest,
  decode,
  decodeAck,
  type DurableCommitRequest,
  type DurableFetchRequest,
  encodeFramed,
  ERROR_SCHEMA,
  type FetchRequest,
  type GroupHeartbeatRequest,
  type GroupLeaveRequest,
  type HelloRequest,
  type MetadataRequest,
  type MetadataResponse,
  type NameRequest,
  type OffsetCommitRequest,
  type OffsetFetchRequest,
  Op,
  type OpName,
  opName,
  type ProduceRequest,
  type ReassignPartitionRequest,
  type RebalanceLeadersRequest,
  type RepairPartitionsRequest,
  type ResetOffsetsRequest,
  SCHEMAS,
  type SubscribeRequest,
  type UnsubscribeRequest,
  type UserPutRequest,
} from "../protocol/messages.ts";
import type { Broker } from "./broker.ts";
import { type ForwardedRequest, LedElsewhere, type SecurityChange } from "./control_plane.ts";
import type { Groups } from "./groups/groups.ts";
import type { DeliverySink, Subscription } from "./subscription.ts";

/**
 * Bytes asked of the socket per read before the handshake: a HELLO is tens of bytes, and thousands
 * of connections that never send one must cost the broker little. (Buffers this small also come
 * back to the allocator in reusable pieces once those connections go.)
 */
const READ_BYTES_HANDSHAKE = 512;
/**
 * Bytes asked per read once handshaken: the buffer starts at the least and doubles each time a
 * read fills it, up to the most, so an idle client stays cheap and a busy one reads in big bites.
 */
const READ_BYTES_MIN = 4 * 1024;
const READ_BYTES_MAX = 64 * 1024;
/** Bytes of a DELIVER payload before its records: subscription id, first offset, flag, length. */
const DELIVER_FIELDS_BYTES = 17;
/**
 * Small deliveries are packed back to back into one buffer until the next write: one allocation
 * per write instead of one per delivery. A push with more records than the most a buffer holds
 * goes out as its own buffer. A buffer holds twice what the last one was used for, within these
 * bounds, so a connection sent one message at a time does not pay for a big one each time.
 */
const STAGED_BYTES_MIN = 512;
const STAGED_BYTES_MAX = 16 * 1024;
/** Time a closing connection gets to send what is queued (a fatal error) before it is cut. */
const CLOSE_FLUSH_MS = 1000;
/** Requests that need no response unless they fail. */
const ONE_WAY: ReadonlySet<number> = new Set([Op.CREDIT, Op.ACK]);
const CODECS_MASK = (1 << CODEC_NAMES.length) - 1;

type Handler = (c: Connection, payload: Uint8Array) => Promise<object | null> | object | null;

/** A client connection to the broker. */
export class Connection implements DeliverySink, RequestContext {
  readonly id: number;
  readonly #broker: Broker;
  readonly #conn: Conn;
  readonly #parser: FrameParser;
  #readBuf = new Uint8Array(READ_BYTES_HANDSHAKE);
  readonly #subs = new Map<number, Subscription>();
  #clientId = "";
  /** HELLO succeeded; with authentication on, the SCRAM exchange must follow. */
  #helloDone = false;
  /** HELLO and, with authentication on, the SCRAM exchange succeeded: requests are served. */
  #handshaken = false;
  /** The authenticated user; null until then, and always with authentication off. */
  #principal: string | null = null;
  /** What runs once a response is queued (a subscription's first delivery follows its SUBSCRIBE's). */
  /** The SCRAM exchange in progress, once AUTH_START arrived (one per connection). */
  #scram: ScramServer | null = null;
  #closed = false;
  #inFlight = 0;
  #outbound: Uint8Array[] = [];
  #outboundBytes = 0;
  #writing = false;
  /** Where small deliveries are packed (see STAGED_BYTES_MAX); null between bursts of writes. */
  #staged: Uint8Array | null = null;
  #stagedView: DataView | null = null;
  /** The packed bytes from `#stagedFrom` to `#stagedAt` are not in `#outbound` yet. */
  #stagedFrom = 0;
  #stagedAt = 0;
  /** Bytes packed since the last buffer was made: what the next one is sized by. */
  #stagedUsed = 0;
  /** The frame header of the last packed DELIVER, for a payload of `#deliverHeaderPayload`. */
  readonly #deliverHeader = new Uint8Array(HEADER_BYTES);
  #deliverHeaderPayload = -1;
  /** Resolves when the read loop may go on (queues drained below their limits). */
  #resume: (() => void) | null = null;

  constructor(broker: Broker, conn: Conn, id: number) {
    this.#broker = broker;
    this.#conn = conn;
    this.id = id;
    // Until HELLO succeeds a peer may send only a small frame: it has proved nothing yet.
    this.#parser = new FrameParser({
      payloadBytesMax: Math.min(broker.opts.handshakeBytesMax, broker.opts.payloadBytesMax),
    });
    this.lastReadMs = broker.env.clock.now();
    this.acceptedMs = this.lastReadMs;
  }

  /** When the connection was accepted (monotonic ms); its HELLO must complete in time. */
  readonly acceptedMs: number;

  /** True once HELLO succeeded. */
  get handshaken(): boolean {
    return this.#handshaken;
  }

  /**
   * Closes a connection silent for `idleMs`: a peer that is gone without a FIN (its machine lost
   * power) or one holding a half-sent frame. Live clients ping a silent broker well within it.
   */
  closeIfIdle(nowMs: number, idleMs: number): boolean {
    if (this.#closed || nowMs - this.lastReadMs < idleMs) return false;
    this.close();
    return true;
  }

  get open(): boolean {
    return !this.#closed;
  }

  /** When bytes last arrived from the client (monotonic ms); idle connections are closed. */
  lastReadMs: number;

  /** True once any byte arrived: a connection that has begun its HELLO is not a silent one. */
  heard = false;

  /** The broker this connection talks to. */
  get broker(): Broker {
    return this.#broker;
  }

  /** The client id from the handshake. */
  get clientId(): string {
    return this.#clientId;
  }

  /** The authenticated user, or null (authentication off, or not completed). */
  get principal(): string | null {
    return this.#principal;
  }

  /** The peer's address, as logs show it. */
  get remote(): string {
    return `${this.#conn.remote.host}:${this.#conn.remote.port}`;
  }

  /**
   * Sends a connection-level error (correlation id 0), then closes: a connection the broker cannot
   * take, or one closed to make room or for missing its handshake deadline.
   */
  refuse(err: GregorError): void {
    if (this.#closed) return;
    this.#fail(0, err.code, err.message);
  }

  /** Reads and serves requests until the peer goes or a fatal error. */
  async run(): Promise<void> {
    try {
      while (!this.#closed) {
        if (
          this.#inFlight >= this.#broker.opts.requestsInFlightMax ||
          this.#outboundBytes >= this.#broker.opts.outboundBytesMax
        ) {
          await new Promise<void>((r) => (this.#resume = r));
          continue;
        }
        // A big payload is read straight into its own buffer; other bytes into the read buffer.
        const target = this.#parser.readTarget();
        const n = await this.#conn.read(target ?? this.#readBuf);
        if (n === null) break;
        this.lastReadMs = this.#broker.env.clock.now();
        this.heard = true;
        if (target !== null) {
          this.#parser.filled(n);
        } else {
          // The parser keeps views into what it is given, so it gets a copy of just the bytes
          // read: cheaper than a fresh zeroed buffer per read when reads are small.
          this.#parser.push(this.#readBuf.slice(0, n));
          if (n === this.#readBuf.length && this.#handshaken && n < READ_BYTES_MAX) {
            this.#readBuf = new Uint8Array(
              Math.min(READ_BYTES_MAX, Math.max(READ_BYTES_MIN, 2 * n)),
            );
          }
        }
        if (!this.#drainFrames()) break;
      }
    } catch {
      // The peer reset or vanished; nothing to answer.
    }
    await this.#closeAfterFlush();
  }

  /** Gives queued frames (a fatal error, say) a bounded time to go out, then closes. */
  async #closeAfterFlush(): Promise<void> {
    const timer = new AbortController();
    await Promise.race([
      this.#flushed(),
      this.#broker.env.clock.sleep(CLOSE_FLUSH_MS, timer.signal).catch(() => {}),
    ]);
    timer.abort(GUARD_DONE);
    this.close();
  }

  /** Handles every whole frame buffered; false once the connection must close. */
  #drainFrames(): boolean {
    for (;;) {
      const r = this.#parser.next();
      if (r.kind === "need") return true;
      if (r.kind === "error") {
        const before = !this.#handshaken && r.code === ErrorCode.FRAME_TOO_LARGE
          ? " before HELLO"
          : "";
        this.#fail(r.correlationId, r.code, r.message + before);
        return false;
      }
      if (!this.#dispatch(r.frame)) return false;
    }
  }

  #dispatch(f: Frame): boolean {
    if ((f.flags & (Flag.RESPONSE | Flag.PUSH | Flag.ERROR)) !== 0) {
      this.#fail(f.correlationId, ErrorCode.MALFORMED_FRAME, "Clients send requests only");
      return false;
    }
    const name = opName(f.opcode);
    const handler = name === null ? undefined : HANDLERS[name];
    if (name === null || handler === undefined) {
      this.#broker.observer.request(name ?? "UNKNOWN", "UNKNOWN_OPCODE");
      this.#fail(
        f.correlationId,
        ErrorCode.UNKNOWN_OPCODE,
        `Unknown opcode 0x${f.opcode.toString(16).padStart(4, "0")}`,
      );
      return false;
    }
    if (!this.#handshaken && !this.#allowedInHandshake(f.opcode)) {
      this.#broker.observer.request(name, "HANDSHAKE_REQUIRED");
      this.#fail(
        f.correlationId,
        ErrorCode.HANDSHAKE_REQUIRED,
        this.#helloDone
          ? `${name} before authentication: this broker requires ${SCRAM_SHA_256} (AUTH_START)`
          : `${name} before HELLO`,
      );
      return false;
    }
    this.#inFlight++;
    let result: Promise<object | null> | object | null;
    try {
      result = handler(this, f.payload);
    } catch (err) {
      if (!(err instanceof LedElsewhere && err.op === name)) {
        this.#finish(f, name, null, err);
        return !this.#closed;
      }
      result = Promise.reject(err);
    }
    if (result instanceof Promise) {
      // A request another node serves goes there as it came, and its answer comes back as sent.
      result.catch((err) =>
        err instanceof LedElsewhere && err.op === name ? this.#relay(f, err) : Promise.reject(err)
      )
        .then((v) => this.#finish(f, name, v, null), (err) => this.#finish(f, name, null, err));
    } else {
      this.#finish(f, name, result, null);
    }
    return !this.#closed;
  }

  #finish(f: Frame, name: OpName, value: object | null, err: unknown): void {
    this.#inFlight--;
    this.#wake();
    const e = err === null ? null : this.#broker.answerFor(name, err);
    const relayed = value instanceof Relayed ? value.frame : null;
    this.#broker.observer.request(
      name,
      e !== null
        ? errorName(e.code) ?? String(e.code)
        : relayed !== null
        ? answerCode(relayed)
        : "OK",
    );
    if (this.#closed) return;
    if (e !== null) {
      if (FATAL_CODES.has(e.code)) this.#fail(f.correlationId, e.code, e.message);
      else this.#sendError(f.correlationId, e.code, e.message);
      return;
    }
    if (value instanceof Relayed) {
      if (relayed !== null) this.#send(readdressed(relayed, f.correlationId));
      return;
    }
    if (value === null || ONE_WAY.has(f.opcode)) return;
    const schema = SCHEMAS[name].response;
    this.#send(
      encodeFramed(schema, value, {
        opcode: f.opcode,
        correlationId: f.correlationId,
        flags: Flag.RESPONSE,
      }),
    );
    const sub = this.#answering.get(value);
    if (sub !== undefined) {
      this.#answering.delete(value);
      sub.release();
    }
  }

  /** SUBSCRIBE answers being sent, and the subscriptions they start. */
  readonly #answering = new WeakMap<object, Subscription>();

  /** Queues an error that ends the connection; reading stops, the socket closes once it is sent. */
  #fail(correlationId: number, code: number, message: string): void {
    this.#sendError(correlationId, code, message);
    this.#closed = true;
    this.#cleanup();
    this.#wake();
    void this.#closeAfterFlush();
  }

  #sendError(correlationId: number, code: number, message: string): void {
    this.#send(errorFrame(correlationId, code, message));
  }

  /** Forwards the request `f` to the node that serves it, as `elsewhere` named. */
  async #relay(f: Frame, elsewhere: LedElsewhere): Promise<Relayed> {
    const frame = await this.#broker.forward(elsewhere.nodeId, {
      opcode: f.opcode,
      payload: f.payload,
      clientId: this.#clientId,
      principal: this.#principal ?? "",
    });
    if (frame !== null && (frame[3]! & Flag.ERROR) === 0) await elsewhere.settle?.();
    return new Relayed(frame);
  }

  /** Requests a connection may send before it is handshaken: HELLO, then the SCRAM exchange. */
  #allowedInHandshake(opcode: number): boolean {
    if (!this.#helloDone) return opcode === Op.HELLO;
    return opcode === Op.AUTH_START || opcode === Op.AUTH_FINISH;
  }

  // --- Handlers' helpers ---------------------------------------------------------------------

  hello(req: HelloRequest): object {
    if (this.#helloDone) {
      throw new GregorError(ErrorCode.INVALID_REQUEST, "HELLO was already sent");
    }
    if (req.versionMin > PROTOCOL_VERSION || req.versionMax < PROTOCOL_VERSION) {
      throw new GregorError(
        ErrorCode.UNSUPPORTED_VERSION,
        `Client speaks versions ${req.versionMin}..${req.versionMax}; this broker speaks ${PROTOCOL_VERSION}`,
      );
    }
    const creds = this.#broker.opts.credentials;
    if (creds.length > 0) {
      const given = req.credential === null ? null : new TextDecoder().decode(req.credential);
      if (given === null || !creds.includes(given)) {
        throw new GregorError(ErrorCode.AUTHENTICATION_FAILED, "The credential was not accepted");
      }
    }
    this.#helloDone = true;
    this.#clientId = req.clientId;
    // With authentication on, the handshake limits hold until the SCRAM exchange succeeds.
    if (!this.#broker.auth.enabled) this.#handshakeComplete();
    return {
      version: PROTOCOL_VERSION,
      brokerId: this.#broker.opts.brokerId,
      payloadBytesMax: this.#broker.opts.payloadBytesMax,
      codecs: CODECS_MASK,
    };
  }

  /**
   * HELLO (and the SCRAM exchange, if on) succeeded. It is handled before the next header is read,
   * so the next frame gets the full payload limit.
   */
  #handshakeComplete(): void {
    this.#handshaken = true;
    this.#parser.setPayloadBytesMax(this.#broker.opts.payloadBytesMax);
    this.#broker.handshakeDone(this);
  }

  /** AUTH_START: answers the client-first with the server-first (docs/protocol.md §4.1). */
  async authStart(req: AuthStartRequest): Promise<AuthMessage> {
    const auth = this.#broker.auth;
    if (!auth.enabled) {
      throw new GregorError(
        ErrorCode.AUTHENTICATION_FAILED,
        "Authentication is not enabled on this broker (start it with --auth scram)",
      );
    }
    if (this.#scram !== null) this.#authFailed("", "a second AUTH_START on one connection");
    const scram = new ScramServer(this.#broker.env.crypto);
    this.#scram = scram;
    if (req.mechanism !== SCRAM_SHA_256) {
      throw new GregorError(
        ErrorCode.AUTHENTICATION_FAILED,
        `Unsupported mechanism ${
          JSON.stringify(req.mechanism)
        }; this broker speaks ${SCRAM_SHA_256}`,
      );
    }
    let first;
    try {
      first = parseClientFirst(req.message ?? new Uint8Array(0));
    } catch (err) {
      this.#authFailed("", err instanceof Error ? err.message : String(err));
    }
    const credential = await auth.credentialFor(first.user);
    return { message: scram.start(first, credential, auth.nonce()) };
  }

  /** AUTH_FINISH: checks the client's proof, answers the server's signature, and admits it. */
  async authFinish(req: AuthMessage): Promise<AuthMessage> {
    const scram = this.#scram;
    if (scram === null || this.#handshaken) {
      this.#authFailed(scram?.user ?? "", "AUTH_FINISH without an exchange waiting for it");
    }
    let serverFinal: Uint8Array;
    try {
      serverFinal = await scram.finish(req.message ?? new Uint8Array(0));
    } catch (err) {
      if (!(err instanceof ScramError)) throw err;
      const known = this.#broker.auth.store.credential(scram.user) !== undefined;
      this.#authFailed(scram.user, known ? err.message : "unknown user");
    }
    if (this.#closed) return { message: serverFinal };
    this.#principal = scram.user;
    this.#handshakeComplete();
    return { message: serverFinal };
  }

  /** Counts and logs a failed authentication, then throws the one answer every failure gets. */
  #authFailed(user: string, why: string): never {
    this.#broker.authFailed(this, user, why);
    throw new GregorError(ErrorCode.AUTHENTICATION_FAILED, "Authentication failed");
  }

  /** Throws AUTHORIZATION_FAILED (counted and logged) unless the principal may do `op`. */
  authorize(op: Operation, type: ResourceType, name: string): void {
    if (this.may(op, type, name)) return;
    this.#broker.denied(this, op, type, name);
    const what = type === "cluster" ? "the cluster" : `${type} ${JSON.stringify(name)}`;
    throw new GregorError(
      ErrorCode.AUTHORIZATION_FAILED,
      `User ${JSON.stringify(this.#principal ?? "")} may not ${op} on ${what}`,
    );
  }

  /** True if the principal may do `op`; a check that filters (lists) rather than refuses. */
  may(op: Operation, type: ResourceType, name: string): boolean {
    return this.#broker.auth.allowed(this.#principal ?? "", op, type, name);
  }

  /**
   * Throws AUTHORIZATION_FAILED unless the principal is a super-user. With authentication off
   * nobody is: users and ACLs planted then would outlive the switch to `--auth scram`, so they are
   * set up offline (`gregorctl user add --data-dir`) instead.
   */
  requireSuperUser(): void {
    const auth = this.#broker.auth;
    if (auth.enabled && auth.isSuperUser(this.#principal ?? "")) return;
    this.#broker.denied(this, "admin", "cluster", "");
    throw new GregorError(
      ErrorCode.AUTHORIZATION_FAILED,
      auth.enabled
        ? `User ${JSON.stringify(this.#principal ?? "")} may not manage users or ACLs: ` +
          `only super-users may (--super-users)`
        : "Users and ACLs are managed over the network only with authentication on " +
          "(--auth scram); until then use gregorctl with --data-dir while the broker is stopped",
    );
  }

  async subscribe(req: SubscribeRequest): Promise<object> {
    if (this.#subs.has(req.subscriptionId)) {
      throw new GregorError(
        ErrorCode.SUBSCRIPTION_EXISTS,
        `Subscription id ${req.subscriptionId} is in use`,
      );
    }
    if (this.#subs.size >= this.#broker.opts.subscriptionsPerConnectionMax) {
      throw new GregorError(
        ErrorCode.LIMIT_EXCEEDED,
        `Subscription limit of ${this.#broker.opts.subscriptionsPerConnectionMax} per connection reached`,
      );
    }
    // Reserve the id while the start offset is looked up, so a duplicate cannot slip in.
    this.#subs.set(req.subscriptionId, PENDING);
    let sub: Subscription;
    try {
      sub = await this.#broker.subscribe(this, req);
    } catch (err) {
      this.#subs.delete(req.subscriptionId);
      throw err;
    }
    if (this.#closed) {
      this.#broker.unsubscribe(sub);
      return {};
    }
    this.#subs.set(req.subscriptionId, sub);
    const log = sub.partition.log;
    const response = {
      startOffset: sub.nextOffset,
      logStartOffset: log.logStartOffset,
      highWatermark: log.nextOffset,
    };
    // Deliveries must follow the SUBSCRIBE response: #finish releases the subscription once it
    // has queued the response.
    this.#answering.set(response, sub);
    return response;
  }

  subscription(id: number): Subscription {
    const s = this.#subs.get(id);
    if (s === undefined || s === PENDING) {
      throw new GregorError(
        ErrorCode.UNKNOWN_SUBSCRIPTION,
        `No subscription ${id} on this connection`,
      );
    }
    return s;
  }

  unsubscribe(id: number): void {
    const s = this.subscription(id);
    this.#subs.delete(id);
    this.#broker.unsubscribe(s);
  }

  // --- DeliverySink --------------------------------------------------------------------------

  /** Header and DELIVER fields in front of a push's records. */
  readonly deliverHeadroomBytes: number = HEADER_BYTES + DELIVER_FIELDS_BYTES;

  deliver(
    sub: Subscription,
    records: Uint8Array,
    firstOffset: number,
    redelivery: boolean,
    headroomBytes: number,
  ): void {
    // The hot path: header, DELIVER fields and the stored batches, the layout SCHEMAS.DELIVER
    // describes (u32 id, i64 first offset, u8 flag, bytes). When the log left room in front of the
    // batches they are not copied at all. Else they are shared (every subscriber of a partition
    // gets the same bytes): small ones are packed after their header into the packing buffer, so a
    // fan-out to a connection's subscriptions becomes one buffer and one write; a batch too big to
    // pack is copied once into a frame of its own (one write, where header and batch apart took two).
    const prefix = this.deliverHeadroomBytes;
    const payloadBytes = DELIVER_FIELDS_BYTES + records.length;
    const fields = {
      subscriptionId: sub.id,
      firstOffset,
      redelivery,
      recordsBytes: records.length,
    };
    if (headroomBytes >= prefix || prefix + records.length > STAGED_BYTES_MAX) {
      let frame: Uint8Array;
      if (headroomBytes >= prefix) {
        frame = new Uint8Array(
          records.buffer,
          records.byteOffset - prefix,
          prefix + records.length,
        );
      } else {
        frame = new Uint8Array(prefix + records.length);
        frame.set(records, prefix);
      }
      writeHeader(frame, {
        version: PROTOCOL_VERSION,
        flags: Flag.PUSH,
        opcode: Op.DELIVER,
        correlationId: 0,
        payloadLength: payloadBytes,
      });
      writeDeliverFields(
        new DataView(frame.buffer, frame.byteOffset, prefix),
        HEADER_BYTES,
        fields,
      );
      this.#send(frame);
      return;
    }
    const at = this.#stage(prefix + records.length);
    const staged = this.#staged as Uint8Array;
    if (this.#deliverHeaderPayload !== payloadBytes) {
      writeHeader(this.#deliverHeader, {
        version: PROTOCOL_VERSION,
        flags: Flag.PUSH,
        opcode: Op.DELIVER,
        correlationId: 0,
        payloadLength: payloadBytes,
      });
      this.#deliverHeaderPayload = payloadBytes;
    }
    staged.set(this.#deliverHeader, at);
    writeDeliverFields(this.#stagedView as DataView, at + HEADER_BYTES, fields);
    staged.set(records, at + prefix);
    if (!this.#writing) void this.#writeLoop();
  }

  // --- Output --------------------------------------------------------------------------------

  /** Room for `n` bytes in the packing buffer: where they go (counted as queued already). */
  #stage(n: number): number {
    if (this.#staged === null || this.#staged.length - this.#stagedAt < n) {
      this.#seal();
      const want = Math.min(STAGED_BYTES_MAX, Math.max(STAGED_BYTES_MIN, 2 * this.#stagedUsed));
      this.#stagedUsed = 0;
      this.#staged = new Uint8Array(Math.max(want, n));
      this.#stagedView = new DataView(this.#staged.buffer);
      this.#stagedFrom = 0;
      this.#stagedAt = 0;
    }
    const at = this.#stagedAt;
    this.#stagedAt += n;
    this.#stagedUsed += n;
    this.#outboundBytes += n;
    return at;
  }

  /** Queues what was packed since the last call, ahead of whatever is queued next. */
  #seal(): void {
    if (this.#stagedAt === this.#stagedFrom) return;
    this.#outbound.push((this.#staged as Uint8Array).subarray(this.#stagedFrom, this.#stagedAt));
    this.#stagedFrom = this.#stagedAt;
  }

  #send(frame: Uint8Array): void {
    this.#seal();
    this.#outbound.push(frame);
    this.#outboundBytes += frame.length;
    if (!this.#writing) void this.#writeLoop();
  }

  async #writeLoop(): Promise<void> {
    this.#writing = true;
    try {
      for (this.#seal(); this.#outbound.length > 0; this.#seal()) {
        const frames = this.#outbound;
        this.#outbound = [];
        this.#outboundBytes -= await writeAllOf(this.#conn, frames);
        this.#wake();
      }
    } catch {
      this.close();
    } finally {
      this.#writing = false;
      // All written: an idle connection holds no packing buffer.
      this.#staged = null;
      this.#stagedView = null;
      this.#stagedFrom = 0;
      this.#stagedAt = 0;
      this.#wake();
    }
  }

  /** Resolves once everything queued so far is written (or the write failed). */
  async #flushed(): Promise<void> {
    while (this.#writing || this.#outbound.length > 0 || this.#stagedAt > this.#stagedFrom) {
      await new Promise<void>((r) => (this.#resume = chain(this.#resume, r)));
    }
  }

  #wake(): void {
    const r = this.#resume;
    this.#resume = null;
    r?.();
  }

  /** Closes the socket and ends every subscription. Idempotent. */
  close(): void {
    this.#closed = true;
    this.#cleanup();
    this.#conn.close();
    this.#wake();
  }

  #cleanup(): void {
    for (const s of this.#subs.values()) if (s !== PENDING) this.#broker.unsubscribe(s);
    this.#subs.clear();
  }
}

/** A DELIVER push's fields before its records. */
interface DeliverFields {
  subscriptionId: number;
  firstOffset: number;
  redelivery: boolean;
  recordsBytes: number;
}

/** Writes a DELIVER push's fields at `at` of `dv`. */
function writeDeliverFields(dv: DataView, at: number, f: DeliverFields): void {
  dv.setUint32(at, f.subscriptionId);
  dv.setInt32(at + 4, Math.floor(f.firstOffset / 0x1_0000_0000));
  dv.setUint32(at + 8, f.firstOffset >>> 0);
  dv.setUint8(at + 12, f.redelivery ? 1 : 0);
  dv.setUint32(at + 13, f.recordsBytes);
}

/** The answer another node sent to a request forwarded there: a whole frame, or none. */
class Relayed {
  constructor(readonly frame: Uint8Array | null) {}
}

function errorFrame(correlationId: number, code: number, message: string): Uint8Array {
  return encodeFramed(ERROR_SCHEMA, { code, message: message.slice(0, 1000) }, {
    opcode: 0,
    correlationId,
    flags: Flag.RESPONSE | Flag.ERROR,
  });
}

/** Gives a relayed answer frame the client's correlation id (in place: the frame is ours). */
function readdressed(frame: Uint8Array, correlationId: number): Uint8Array {
  const dv = new DataView(frame.buffer, frame.byteOffset, HEADER_BYTES);
  writeHeader(frame, {
    version: dv.getUint8(2),
    flags: dv.getUint8(3),
    opcode: dv.getUint16(4),
    correlationId,
    payloadLength: dv.getUint32(12),
  });
  return frame;
}

/** The outcome an answer frame carries, as metrics name it. */
function answerCode(frame: Uint8Array): string {
  if ((frame[3]! & Flag.ERROR) === 0 || frame.length < HEADER_BYTES + 2) return "OK";
  const code = new DataView(frame.buffer, frame.byteOffset + HEADER_BYTES, 2).getUint16(0);
  return errorName(code) ?? String(code);
}

/**
 * Serves a request another node forwarded (`ForwardedRequest`): the node the client is connected
 * to checked its ACLs and forwards only FORWARDABLE requests. Resolves with the answer as a whole
 * frame (correlation id 0), or null if the request has none. A request this node does not serve
 * either is answered NOT_LEADER: it is never forwarded twice.
 */
export async function serveForwarded(
  broker: Broker,
  forwarded: ForwardedRequest,
): Promise<Uint8Array | null> {
  const name = opName(forwarded.opcode);
  const label = name ?? `opcode 0x${forwarded.opcode.toString(16).padStart(4, "0")}`;
  let value: object | null = null;
  let err: unknown = null;
  try {
    const handler = name === null ? undefined : FORWARDABLE[name];
    if (handler === undefined) {
      throw new GregorError(
        ErrorCode.INVALID_REQUEST,
        `${label} is not a request one node forwards to another`,
      );
    }
    value = await handler(new ForwardedContext(broker, forwarded), forwarded.payload);
  } catch (e) {
    err = e instanceof LedElsewhere ? new GregorError(ErrorCode.NOT_LEADER, e.message) : e;
  }
  const e = err === null ? null : broker.answerFor(label, err);
  broker.observer.request(label, e === null ? "OK" : errorName(e.code) ?? String(e.code));
  if (e !== null) return errorFrame(0, e.code, e.message);
  if (value === null || name === null) return null;
  return encodeFramed(SCHEMAS[name].response, value, {
    opcode: forwarded.opcode,
    correlationId: 0,
    flags: Flag.RESPONSE,
  });
}

/** The client behind a forwarded request, as its handler sees it. */
class ForwardedContext implements RequestContext {
  readonly broker: Broker;
  readonly clientId: string;
  readonly principal: string | null;

  constructor(broker: Broker, req: ForwardedRequest) {
    this.broker = broker;
    this.clientId = req.clientId;
    this.principal = req.principal === "" ? null : req.principal;
  }

  /** The node the client is connected to authorized the request before forwarding it. */
  authorize(): void {}

  /** The node the client is connected to checked that it is a super-user before forwarding. */
  requireSuperUser(): void {}

  may(op: Operation, type: ResourceType, name: string): boolean {
    return this.broker.auth.allowed(this.principal ?? "", op, type, name);
  }
}

/** Placeholder for a subscription id whose SUBSCRIBE is still being served. */
const PENDING = {} as Subscription;

function chain(a: (() => void) | null, b: () => void): () => void {
  return a === null ? b : () => {
    a();
    b();
  };
}

function req<T>(op: OpName, payload: Uint8Array): T {
  return decode<T>(SCHEMAS[op].request, payload, op);
}

/**
 * What a handler may ask of whoever sent its request: a client's connection, or, for a request
 * another node forwarded, its envelope.
 */
export interface RequestContext {
  readonly broker: Broker;
  readonly clientId: string;
  readonly principal: string | null;
  /** Throws AUTHORIZATION_FAILED (counted and logged) unless the principal may do `op`. */
  authorize(op: Operation, type: ResourceType, name: string): void;
  /** True if the principal may do `op`; a check that filters (lists) rather than refuses. */
  may(op: Operation, type: ResourceType, name: string): boolean;
  /** Throws AUTHORIZATION_FAILED unless the principal is a super-user. */
  requireSuperUser(): void;
}

type ForwardableHandler = (
  c: RequestContext,
  payload: Uint8Array,
) => Promise<object | null> | object | null;

function atCoordinator<R>(
  c: RequestContext,
  op: OpName,
  local: (groups: Groups) => R | Promise<R>,
): Promise<R> {
  return c.broker.groupRequest(op, () => local(c.broker.groups));
}

/**
 * Requests that may have to run on another node than the client's (where a partition or the
 * metadata group leads, or groups are coordinated): their handlers need nothing of a connection.
 */
const FORWARDABLE: Partial<Record<OpName, ForwardableHandler>> = {
  PRODUCE: (c, p) => {
    const r = req<ProduceRequest>("PRODUCE", p);
    c.authorize("produce", "topic", r.topic);
    const done = c.broker.produce(r);
    return r.acks === Acks.none ? done.then(() => null) : done;
  },
  INIT_PRODUCER_ID: (c, p) => (req("INIT_PRODUCER_ID", p), c.broker.initProducerId()),
  DURABLE_COMMIT: (c, p) => {
    const r = req<DurableCommitRequest>("DURABLE_COMMIT", p);
    for (const o of r.offsets) c.authorize("consume", "topic", o.topic);
    return c.broker.commitDurables(r).then(() => ({}));
  },
  DURABLE_FETCH: (c, p) => {
    const r = req<DurableFetchRequest>("DURABLE_FETCH", p);
    c.authorize("consume", "topic", r.topic);
    return c.broker.durableOffset(r).then((offset) => ({ offset }));
  },
  CREATE_TOPIC: (c, p) => {
    const r = req<CreateTopicRequest>("CREATE_TOPIC", p);
    c.authorize("create", "topic", r.name);
    return c.broker.createTopic(r).then(() => ({}));
  },
  DELETE_TOPIC: (c, p) => {
    const { name } = req<NameRequest>("DELETE_TOPIC", p);
    c.authorize("delete", "topic", name);
    return c.broker.deleteTopic(name).then(() => ({}));
  },
  ALTER_TOPIC: (c, p) => {
    const r = req<AlterTopicRequest>("ALTER_TOPIC", p);
    c.authorize("alter", "topic", r.name);
    return c.broker.alterTopic(r).then(() => ({}));
  },
  CREATE_PARTITIONS: (c, p) => {
    const r = req<CreatePartitionsRequest>("CREATE_PARTITIONS", p);
    c.authorize("alter", "topic", r.name);
    return c.broker.createPartitions(r).then(() => ({}));
  },
  REASSIGN_PARTITION: (c, p) => {
    const r = req<ReassignPartitionRequest>("REASSIGN_PARTITION", p);
    c.authorize("alter", "topic", r.name);
    return c.broker.reassignPartition(r).then(() => ({}));
  },
  // Leaders of every topic move: the cluster as a whole is altered.
  REBALANCE_LEADERS: (c, p) => {
    const r = req<RebalanceLeadersRequest>("REBALANCE_LEADERS", p);
    c.authorize("alter", "cluster", "");
    return c.broker.rebalanceLeaders(r);
  },
  // Group requests run on the group coordinator (in a cluster, the metadata group's leader).
  GROUP_HEARTBEAT: (c, p) => {
    const r = req<GroupHeartbeatRequest>("GROUP_HEARTBEAT", p);
    c.authorize("join", "group", r.group);
    for (const t of r.topics) c.authorize("consume", "topic", t.name);
    return atCoordinator(c, "GROUP_HEARTBEAT", (g) => g.heartbeat(r, c.clientId));
  },
  GROUP_LEAVE: (c, p) => {
    const r = req<GroupLeaveRequest>("GROUP_LEAVE", p);
    c.authorize("join", "group", r.group);
    return atCoordinator(c, "GROUP_LEAVE", (g) => (g.leave(r), {}));
  },
  OFFSET_COMMIT: (c, p) => {
    const r = req<OffsetCommitRequest>("OFFSET_COMMIT", p);
    c.authorize("join", "group", r.group);
    for (const o of r.offsets) c.authorize("consume", "topic", o.topic);
    return atCoordinator(c, "OFFSET_COMMIT", (g) => g.commit(r).then(() => ({})));
  },
  OFFSET_FETCH: (c, p) => {
    const r = req<OffsetFetchRequest>("OFFSET_FETCH", p);
    c.authorize("describe", "group", r.group);
    return atCoordinator(c, "OFFSET_FETCH", (g) => g.fetch(r));
  },
  LIST_GROUPS: (
    c,
    p,
  ) => (req("LIST_GROUPS", p),
    atCoordinator(c, "LIST_GROUPS", (g) => g.list()).then((all) => ({
      groups: all.groups.filter((g) => c.may("describe", "group", g.group)),
    }))),
  DESCRIBE_GROUP: (c, p) => {
    const r = req<{ group: string }>("DESCRIBE_GROUP", p);
    c.authorize("describe", "group", r.group);
    return atCoordinator(c, "DESCRIBE_GROUP", (g) => g.describe(r.group));
  },
  RESET_OFFSETS: (c, p) => {
    const r = req<ResetOffsetsRequest>("RESET_OFFSETS", p);
    c.authorize("alter", "group", r.group);
    return atCoordinator(c, "RESET_OFFSETS", (g) => g.reset(r));
  },
  // Users and ACLs are changed where they are kept: in a cluster, on the metadata group's leader.
  USER_PUT: (c, p) => {
    const r = req<UserPutRequest>("USER_PUT", p);
    c.requireSuperUser();
    const cred = {
      salt: r.salt ?? new Uint8Array(0),
      iterations: r.iterations,
      storedKey: r.storedKey ?? new Uint8Array(0),
      serverKey: r.serverKey ?? new Uint8Array(0),
    };
    const problem = credentialProblem(r.name, cred);
    if (problem !== null) throw new GregorError(ErrorCode.INVALID_REQUEST, problem);
    const user = {
      salt: toBase64(cred.salt),
      iterations: cred.iterations,
      storedKey: toBase64(cred.storedKey),
      serverKey: toBase64(cred.serverKey),
    };
    return changeSecurity(c, { op: "putUser", name: r.name, user }, "USER_PUT", async () => {
      await c.broker.auth.store.putUser(r.name, cred);
      return true;
    }).then(() => ({}), invalid);
  },
  USER_DELETE: (c, p) => {
    const r = req<NameRequest>("USER_DELETE", p);
    c.requireSuperUser();
    const change = { op: "removeUser" as const, name: r.name };
    return changeSecurity(c, change, "USER_DELETE", () => c.broker.auth.store.removeUser(r.name))
      .then((removed) => {
        if (!removed) {
          throw new GregorError(ErrorCode.INVALID_REQUEST, `No user ${JSON.stringify(r.name)}`);
        }
        return {};
      });
  },
  ACL_ADD: (c, p) => {
    const r = req<AclWire>("ACL_ADD", p);
    c.requireSuperUser();
    const acl = r as AclEntry;
    const problem = aclProblem(acl);
    if (problem !== null) throw new GregorError(ErrorCode.INVALID_REQUEST, problem);
    return changeSecurity(
      c,
      { op: "addAcl", acl },
      "ACL_ADD",
      () => c.broker.auth.store.addAcl(acl),
    )
      .then(() => ({}), invalid);
  },
  ACL_REMOVE: (c, p) => {
    const r = req<AclWire>("ACL_REMOVE", p);
    c.requireSuperUser();
    const acl = r as AclEntry;
    return changeSecurity(
      c,
      { op: "removeAcl", acl },
      "ACL_REMOVE",
      () => c.broker.auth.store.removeAcl(acl),
    ).then((removed) => {
      if (!removed) throw new GregorError(ErrorCode.INVALID_REQUEST, "No such ACL entry");
      return {};
    });
  },
};

/** One handler per opcode; DELIVER is broker-to-client only. */
const HANDLERS: Partial<Record<OpName, Handler>> = {
  ...FORWARDABLE,
  HELLO: (c, p) => c.hello(req<HelloRequest>("HELLO", p)),
  PING: (_c, p) => (req("PING", p), {}),
  AUTH_START: (c, p) => c.authStart(req<AuthStartRequest>("AUTH_START", p)),
  AUTH_FINISH: (c, p) => c.authFinish(req<AuthMessage>("AUTH_FINISH", p)),
  SUBSCRIBE: (c, p) => {
    const r = req<SubscribeRequest>("SUBSCRIBE", p);
    c.authorize("consume", "topic", r.topic);
    return c.subscribe(r);
  },
  CREDIT: (c, p) => {
    const r = req<CreditRequest>("CREDIT", p);
    c.subscription(r.subscriptionId).grant(r.messages, r.bytes);
    return null;
  },
  ACK: (c, p) => {
    const r = decodeAck(p);
    const problem = c.subscription(r.subscriptionId).ack(r.offset);
    if (problem !== null) throw new GregorError(ErrorCode.INVALID_REQUEST, problem);
    return null;
  },
  UNSUBSCRIBE: (
    c,
    p,
  ) => (c.unsubscribe(req<UnsubscribeRequest>("UNSUBSCRIBE", p).subscriptionId), {}),
  FETCH: (c, p) => {
    const r = req<FetchRequest>("FETCH", p);
    c.authorize("consume", "topic", r.topic);
    return c.broker.fetch(r);
  },
  LIST_TOPICS: (c, p) => {
    req("LIST_TOPICS", p);
    const all = c.broker.listTopics();
    return { topics: all.topics.filter((t) => c.may("describe", "topic", t.name)) };
  },
  DESCRIBE_TOPIC: (c, p) => {
    const { name } = req<NameRequest>("DESCRIBE_TOPIC", p);
    c.authorize("describe", "topic", name);
    return c.broker.describeTopic(name);
  },
  REPAIR_PARTITIONS: (c, p) => {
    const r = req<RepairPartitionsRequest>("REPAIR_PARTITIONS", p);
    c.authorize("alter", "topic", r.name);
    return c.broker.repairPartitions(r);
  },
  CLUSTER_MEMBERS: (c, p) => {
    req("CLUSTER_MEMBERS", p);
    c.authorize("describe", "cluster", "");
    return c.broker.clusterMembers();
  },
  METADATA: (c, p) => metadata(c, req<MetadataRequest>("METADATA", p)),
  USER_LIST: (c, p) => {
    req("USER_LIST", p);
    c.requireSuperUser();
    return { users: c.broker.auth.store.users() };
  },
  ACL_LIST: (c, p) => {
    req("ACL_LIST", p);
    c.requireSuperUser();
    return { acls: c.broker.auth.store.acls };
  },
};

/**
 * A change of users or ACLs: in a cluster, through the metadata group (so it takes effect on every
 * node); alone, to this node's files with `local`. Resolves true if it changed something.
 */
function changeSecurity(
  c: RequestContext,
  change: SecurityChange,
  op: OpName,
  local: () => Promise<boolean>,
): Promise<boolean> {
  return c.broker.changeSecurity(change, op, local);
}

/** A store's RangeError (a bad name, key or entry, a limit) is the client's INVALID_REQUEST. */
function invalid(err: unknown): never {
  if (err instanceof RangeError) throw new GregorError(ErrorCode.INVALID_REQUEST, err.message);
  throw err;
}

/**
 * METADATA with the ACLs: a named topic the principal may not describe is answered with
 * AUTHORIZATION_FAILED in its entry; the list of every topic leaves such topics out.
 */
async function metadata(c: Connection, r: MetadataRequest): Promise<MetadataResponse> {
  const denied = r.topics.filter((t) => !c.may("describe", "topic", t.name));
  for (const t of denied) c.broker.denied(c, "describe", "topic", t.name);
  const allowed = r.topics.filter((t) => c.may("describe", "topic", t.name));
  if (r.topics.length > 0 && allowed.length === 0) {
    const none = await c.broker.metadata({ topics: [], autoCreate: 0 });
    return { ...none, topics: denied.map(deniedTopic) };
  }
  const answer = await c.broker.metadata({ ...r, topics: allowed });
  const topics = answer.topics.filter((t) => c.may("describe", "topic", t.name));
  return { ...answer, topics: [...topics, ...denied.map(deniedTopic)] };
}

function deniedTopic(t: { name: string }): MetadataResponse["topics"][number] {
  return { name: t.name, error: ErrorCode.AUTHORIZATION_FAILED, partitions: [] };
}
