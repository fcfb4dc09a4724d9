'use strict';
// Drives the official, unmodified azure-iot-provisioning-service ProvisioningServiceClient.
// Input: one JSON object on argv[2] (or stdin):
//   {"connectionString": "HostName=...;SharedAccessKeyName=...;SharedAccessKey=...",
//    "timeoutMs": 60000, "maxPages": 100,
//    "ops": [ {"op": "<ProvisioningServiceClient method>", "args": [...]},
//             {"op": "queryIndividualEnrollments"|"queryEnrollmentGroups", "query": {"query": "SELECT *"}, "pageSize": N},
//             {"op": "queryDeviceRegistrationStates", "groupId": "g1", "query": {...}, "pageSize": N} ] }
//   (for queryDeviceRegistrationStates a string "query" is taken as the groupId)
// Output: one JSON line on stdout, exit 0:
//   {"results": [ {"ok": true, "value": <body>, "statusCode": <n>} | {"ok": false, "error": {...}} ]}
//   queries: {"ok": true, "pages": [{"statusCode", "items", "continuationToken", "headers"}]}
//   On overall timeout: {"results": [...done so far], "error": {"name": "HarnessTimeout"}}
// Ops run in order; a failed op does not stop the run. Exit code != 0 only for harness bugs.
const { ProvisioningServiceClient } = require('azure-iot-provisioning-service');

let finished = false;
const results = [];
function finish(extra) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(Object.assign({ results }, extra)) + '\n', () => process.exit(0));
}

function describeError(err) {
  if (!err || typeof err !== 'object') return { name: 'Error', message: String(err) };
  const out = { name: err.name || (err.constructor && err.constructor.name), message: err.message };
  if (err.code !== undefined) out.code = err.code;
  if (err.response && err.response.statusCode !== undefined) out.statusCode = err.response.statusCode;
  if (err.responseBody !== undefined) out.responseBody = err.responseBody;
  return out;
}

function pickHeaders(h) {
  const out = {};
  for (const k of Object.keys(h || {})) if (k.startsWith('x-ms-') || k === 'content-type' || k === 'etag') out[k] = h[k];
  return out;
}

// Calls client[op](...args, callback), args padded with undefined so the callback always lands in the
// method's last parameter; callback is (err, body, response) or, for deletes, (err).
function runPlain(client, spec) {
  return new Promise((resolve) => {
    const fn = client[spec.op];
    if (typeof fn !== 'function' || /^_|^constructor$|Query$/.test(spec.op)) {
      return resolve({ ok: false, error: { name: 'HarnessUnknownOp', message: String(spec.op) } });
    }
    const args = (spec.args || []).slice();
    while (args.length < fn.length - 1) args.push(undefined);
    try {
      fn.call(client, ...args, (err, body, response) => {
        if (err) return resolve({ ok: false, error: describeError(err) });
        const r = { ok: true, value: body === undefined ? null : body };
        if (response && response.statusCode !== undefined) r.statusCode = response.statusCode;
        resolve(r);
      });
    } catch (err) {
      resolve({ ok: false, error: Object.assign(describeError(err), { thrown: true }) });
    }
  });
}

async function runQuery(client, spec, maxPages) {
  let query;
  let querySpec = spec.query !== undefined ? spec.query : { query: 'SELECT *' };
  try {
    if (spec.op === 'queryIndividualEnrollments') query = client.createIndividualEnrollmentQuery(querySpec, spec.pageSize);
    else if (spec.op === 'queryEnrollmentGroups') query = client.createEnrollmentGroupQuery(querySpec, spec.pageSize);
    else {
      let groupId = spec.groupId;
      if (typeof spec.query === 'string') { groupId = spec.query; querySpec = { query: 'SELECT *' }; }
      query = client.createEnrollmentGroupDeviceRegistrationStateQuery(querySpec, groupId, spec.pageSize);
    }
  } catch (err) {
    return { ok: false, error: Object.assign(describeError(err), { thrown: true }) };
  }
  const pages = [];
  while (query.hasMoreResults) {
    if (pages.length >= maxPages) return { ok: false, pages, error: { name: 'HarnessMaxPages', message: 'more than ' + maxPages + ' pages' } };
    const page = await new Promise((resolve) => {
      query.next((err, body, response) => {
        if (err) return resolve({ error: describeError(err) });
        resolve({ statusCode: response.statusCode, items: body === undefined ? null : body,
          continuationToken: query.continuationToken === undefined ? null : query.continuationToken,
          headers: pickHeaders(response.headers) });
      });
    });
    if (page.error) return { ok: false, pages, error: page.error };
    pages.push(page);
  }
  return { ok: true, pages };
}

const QUERY_OPS = ['queryIndividualEnrollments', 'queryEnrollmentGroups', 'queryDeviceRegistrationStates'];

async function main(input) {
  if (!input.connectionString) throw new Error('missing connectionString');
  if (!Array.isArray(input.ops)) throw new Error('ops must be an array');
  setTimeout(() => finish({ error: { name: 'HarnessTimeout' } }), input.timeoutMs || 60000);
  const client = ProvisioningServiceClient.fromConnectionString(input.connectionString);
  for (const spec of input.ops) {
    results.push(QUERY_OPS.includes(spec.op) ? await runQuery(client, spec, input.maxPages || 100) : await runPlain(client, spec));
  }
  finish({});
}

function onUncaught(err) {
  results.push({ ok: false, error: Object.assign(describeError(err), { uncaught: true }) });
  finish({});
}
process.on('uncaughtException', onUncaught);
process.on('unhandledRejection', onUncaught);

function start(text) {
  let input;
  try {
    input = JSON.parse(text);
  } catch (err) {
    process.stderr.write('harness error: bad input JSON: ' + err.message + '\n');
    process.exit(2);
  }
  main(input).catch((err) => {
    process.stderr.write('harness error: ' + (err && err.stack || err) + '\n');
    process.exit(2);
  });
}

if (process.argv[2] !== undefined) start(process.argv[2]);
else {
  let data = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (c) => { data += c; });
  process.stdin.on('end', () => start(data));
}
