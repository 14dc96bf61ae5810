/**
 * A client process of write-semantics.test.ts: its own MongoClient (own connections) to the
 * address in argv[2]. It reads commands on stdin, one JSON object a line, runs each as many
 * simultaneous operations, and answers one JSON line per command on stdout.
 */
import { createInterface } from "node:readline";
import { MongoClient } from "mongodb";

/** A command: `n` simultaneous operations of one kind on `db`.`coll`. */
export type ClientCommand = { seq: number; db: string; coll: string } & (
  | { op: "inc"; id: string; n: number }
  | { op: "findOneAndInc"; id: string; n: number }
  | { op: "casReplace"; id: string; n: number }
  | { op: "upsertInc"; keys: number; n: number }
  | { op: "pop"; n: number }
  | { op: "claim"; worker: string; n: number }
  | { op: "deleteEach"; ids: string[] }
);

/** The answer to a command. */
export type ClientAnswer = { seq: number } & ({ ok: true; result: unknown } | { ok: false; error: string });

interface Counter {
  _id: string;
  value: number;
  version: number;
}

const client = await new MongoClient(process.argv[2]!, { maxPoolSize: 200 }).connect();

async function run(cmd: ClientCommand): Promise<unknown> {
  const coll = client.db(cmd.db).collection(cmd.coll);
  const times = (n: number) => Array.from({ length: n }, (_, i) => i);
  switch (cmd.op) {
    case "inc": {
      // Acknowledged increments.
      const rs = await Promise.all(times(cmd.n).map(() => coll.updateOne({ _id: cmd.id as never }, { $inc: { value: 1 } })));
      return rs.filter((r) => r.modifiedCount === 1).length;
    }
    case "findOneAndInc": {
      // The value each increment produced; every one must be different.
      const counters = client.db(cmd.db).collection<Counter>(cmd.coll);
      const docs = await Promise.all(
        times(cmd.n).map(() => counters.findOneAndUpdate({ _id: cmd.id }, { $inc: { value: 1, version: 1 } }, { returnDocument: "after" })),
      );
      return docs.map((d) => d?.value ?? null);
    }
    case "casReplace": {
      // Read, then replace only if nobody wrote in between (same version); retry until it lands.
      const counters = client.db(cmd.db).collection<Counter>(cmd.coll);
      let retries = 0;
      await Promise.all(
        times(cmd.n).map(async () => {
          for (;;) {
            const cur = await counters.findOne({ _id: cmd.id });
            if (cur === null) throw new Error(`counter ${cmd.id} is gone`);
            const r = await counters.replaceOne({ _id: cmd.id, version: cur.version }, { value: cur.value + 1, version: cur.version + 1 });
            if (r.matchedCount === 1) return;
            retries++;
          }
        }),
      );
      return retries;
    }
    case "upsertInc": {
      const rs = await Promise.all(times(cmd.n).map((i) => coll.updateOne({ _id: `key-${i % cmd.keys}` as never }, { $inc: { value: 1 } }, { upsert: true })));
      return rs.filter((r) => r.modifiedCount + r.upsertedCount === 1).length;
    }
    case "pop": {
      // A queue: take the oldest job by deleting it; null when none is left.
      const docs = await Promise.all(times(cmd.n).map(() => coll.findOneAndDelete({ state: "ready" }, { sort: { _id: 1 } })));
      return docs.map((d) => (d === null ? null : String(d["_id"])));
    }
    case "claim": {
      const docs = await Promise.all(
        times(cmd.n).map(() => coll.findOneAndUpdate({ state: "ready" }, { $set: { state: "taken", by: cmd.worker } }, { sort: { _id: 1 }, returnDocument: "after" })),
      );
      return docs.map((d) => (d === null ? null : String(d["_id"])));
    }
    case "deleteEach": {
      const rs = await Promise.all(cmd.ids.map((id) => coll.deleteOne({ _id: id as never })));
      return rs.reduce((sum, r) => sum + r.deletedCount, 0);
    }
  }
}

const answer = (a: ClientAnswer): void => void process.stdout.write(`${JSON.stringify(a)}\n`);
const lines = createInterface({ input: process.stdin });
const pending: Promise<void>[] = [];
lines.on("line", (line) => {
  const cmd = JSON.parse(line) as ClientCommand;
  pending.push(
    run(cmd).then(
      (result) => answer({ seq: cmd.seq, ok: true, result }),
      (err: unknown) => answer({ seq: cmd.seq, ok: false, error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) }),
    ),
  );
});
lines.on("close", () => {
  void Promise.allSettled(pending).then(() => client.close());
});
process.stdout.write("ready\n");
