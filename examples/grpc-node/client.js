// A Node.js client of qtasks_fast.v1.QTasksFast (qtasks_fast/grpc/v1/qtasks_fast.proto), loaded at run time
// with @grpc/proto-loader: it watches the task's status changes, submits add(2, 3), waits for its result and
// prints one JSON line per step, then exits 0 once the watch has seen the task succeed.
//
//   npm ci && QTASKS_GRPC_TOKEN=... node client.js [host:port]
//
// Environment: QTASKS_GRPC_TOKEN (the server's token), QTASKS_PROTO (the .proto file; default: the package's).
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const target = process.argv[2] || '127.0.0.1:50051';
const protoFile = process.env.QTASKS_PROTO ||
  path.join(__dirname, '..', '..', 'qtasks_fast', 'grpc', 'v1', 'qtasks_fast.proto');
const definition = protoLoader.loadSync(protoFile, { keepCase: true, longs: Number, enums: String, defaults: true,
  oneofs: true });
const { QTasksFast } = grpc.loadPackageDefinition(definition).qtasks_fast.v1;
const client = new QTasksFast(target, grpc.credentials.createInsecure());

function auth() {
  const metadata = new grpc.Metadata();
  metadata.add('authorization', `Bearer ${process.env.QTASKS_GRPC_TOKEN || ''}`);
  return metadata;
}

function call(method, request) {
  return new Promise((resolve, reject) => {
    const options = { deadline: Date.now() + 30000 };
    client[method](request, auth(), options, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

function say(what, data) {
  console.log(JSON.stringify({ step: what, ...data }));
}

async function main() {
  const events = []; // every event of the watch: the task's first ones may come before AddTask answers
  let uuid = null;
  let settle;
  const succeeded = new Promise((resolve) => { settle = resolve; });
  const check = () => {
    if (uuid && events.some((e) => e.uuid === uuid && e.status === 'success')) settle();
  };
  const watch = client.WatchTasks({ task_names: ['add'], from_oldest: true }, auth());
  watch.on('data', (event) => { events.push(event); check(); });
  watch.on('error', (err) => {
    if (err.code !== grpc.status.CANCELLED) { console.error(`watch failed: ${err.details}`); process.exit(1); }
  });

  const sent = await call('AddTask', { name: 'add', args: { json: JSON.stringify([2, 3]) } });
  uuid = sent.task.uuid;
  say('submitted', { uuid, status: sent.task.status });
  const done = await call('GetTask', { uuid, wait: 20 });
  say('result', { uuid, status: done.task.status, result: JSON.parse(done.task.result.json),
    seconds: done.finished_at - done.started_at });
  check();
  await succeeded;
  watch.cancel();
  const seen = events.filter((e) => e.uuid === uuid);
  seen.forEach((e) => say('event', { uuid: e.uuid, status: e.status, id: e.id }));
  try {
    await call('GetTask', { uuid: 'not-a-uuid' });
  } catch (err) {
    say('error', { code: grpc.status[err.code], details: err.details });
  }
  say('watched', { statuses: seen.map((e) => e.status) });
  client.close();
}

main().catch((err) => {
  console.error(`failed: ${err.details || err.message}`);
  process.exit(1);
});
