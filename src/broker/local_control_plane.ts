// The control plane of a broker that is not part of a replicating cluster: this node decides every
// topic, holds and leads every partition, coordinates every group and keeps durable offsets in its
// own data directory. Nothing is ever forwarded.

import type { BatchHeader } from "../protocol/batch.ts";
import { ErrorCode, GregorError } from "../protocol/errors.ts";
import type {
  AlterTopicRequest,
  CreatePartitionsRequest,
  CreateTopicRequest,
  DurableFetchRequest,
  InitProducerIdResponse,
  MetadataRequest,
  MetadataResponse,
  OpName,
  ProduceRequest,
  ProduceResponse,
  RebalanceLeadersResponse,
  RepairPartitionsRequest,
  RepairPartitionsResponse,
} from "../protocol/messages.ts";
import type {
  ControlPlane,
  PartitionReplication,
  PlaneHost,
  SecurityChange,
} from "./control_plane.ts";
import type { Topic } from "./topic.ts";

/** Serves everything on this node. */
export class LocalControlPlane implements ControlPlane {
  #host: PlaneHost | null = null;

  bind(host: PlaneHost): void {
    if (this.#host !== null) throw new Error("A control plane serves one broker");
    this.#host = host;
  }

  get #here() {
    if (this.#host === null) throw new Error("The control plane is not bound to a broker");
    return this.#host.here;
  }

  createTopic(req: CreateTopicRequest): Promise<Topic> {
    return this.#here.createTopic(req);
  }

  autoCreateTopic(req: CreateTopicRequest): Promise<Topic> {
    return this.#here.createTopic(req);
  }

  deleteTopic(name: string): Promise<void> {
    return this.#here.deleteTopic(name);
  }

  createPartitions(req: CreatePartitionsRequest): Promise<void> {
    return this.#here.createPartitions(req);
  }

  alterTopic(req: AlterTopicRequest): Promise<void> {
    return this.#here.alterTopic(req);
  }

  /** This node's users and ACLs are its own files. */
  changeSecurity(
    _change: SecurityChange,
    _op: OpName,
    local: () => Promise<boolean>,
  ): Promise<boolean> {
    return local();
  }

  repairPartitions(req: RepairPartitionsRequest): Promise<RepairPartitionsResponse> {
    return this.#here.repairPartitions(req);
  }

  reassignPartition(): Promise<void> {
    return needsCluster(
      "REASSIGN_PARTITION needs a replicating cluster (--cluster-replicate); this node holds " +
        "every partition alone",
    );
  }

  rebalanceLeaders(): Promise<RebalanceLeadersResponse> {
    return needsCluster(
      "REBALANCE_LEADERS needs a replicating cluster (--cluster-replicate); this node leads " +
        "every partition alone",
    );
  }

  metadata(req: MetadataRequest): Promise<MetadataResponse> {
    return this.#here.metadata(req);
  }

  append(req: ProduceRequest, header: BatchHeader): Promise<ProduceResponse> {
    return this.#here.append(req, header);
  }

  initProducerId(): Promise<InitProducerIdResponse> {
    return this.#here.initProducerId();
  }

  holds(): boolean {
    return true;
  }

  checkReadable(): void {}

  readonly endsExact = true;

  replication(): PartitionReplication {
    // A single node leads and holds every partition alone, and is always in sync with itself.
    const self = [{ id: this.#host?.nodeId ?? "" }];
    return { leader: this.#host?.nodeId ?? "", replicas: self, isr: self, moving: 0 };
  }

  atCoordinator<R>(_op: OpName, local: () => R | Promise<R>): Promise<R> {
    return Promise.resolve().then(local);
  }

  durableAcked(): void {
    this.#here.offsetsMoved();
  }

  flushDurables(): Promise<void> {
    return this.#here.flushOffsets();
  }

  commitDurables(): Promise<void> {
    return needsCluster(
      "DURABLE_COMMIT is sent between the nodes of a replicating cluster; this node is in none",
    );
  }

  durableOffset(req: DurableFetchRequest): Promise<number> {
    return Promise.resolve(this.#here.durableOffset(req));
  }

  resumeOffset(): Promise<number> {
    return Promise.resolve(-1);
  }

  forward(to: string): Promise<Uint8Array | null> {
    return Promise.reject(
      new GregorError(
        ErrorCode.NOT_LEADER,
        `Cannot forward a request to ${to}: this node is in no replicating cluster`,
      ),
    );
  }

  close(): Promise<void> {
    return this.#here.flushOffsets();
  }
}

/** The answer to a request only a replicating cluster serves: INVALID_REQUEST saying why. */
function needsCluster<T>(why: string): Promise<T> {
  return Promise.reject(new GregorError(ErrorCode.INVALID_REQUEST, why));
}
