import { connect } from "@gregormq/gregormq";

const client = await connect(); // 127.0.0.1:7070, where `deno task start` listens

// Subscribe from the earliest message; unacknowledged messages would come again after 30 s.
const orders = await client.subscribe("orders", { from: "earliest" });

// Publish: each promise resolves with the offset the broker acknowledged.
const offsets = await Promise.all(
  ["margherita", "quattro formaggi", "diavola"].map((pizza, i) =>
    client.publish("orders", { key: `order-${i}`, value: pizza })
  ),
);
console.log("published at offsets", offsets);

for await (const msg of orders) {
  console.log(`received #${msg.offset}: ${msg.text()}`);
  msg.ack();
  if (msg.offset === offsets.at(-1)) break;
}
await client.close();
