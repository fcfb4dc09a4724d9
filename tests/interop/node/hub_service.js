'use strict';
// One call of the official, unmodified Azure IoT Hub Node service SDK (azure-iothub).
// Input (argv[2]): {connectionString, action, deviceId, ...}
//   action "getTwin" | "updateTwin" {patch} | "invokeMethod" {methodName, payload} |
//          "getDevice" | "createDevice" {status?} | "updateDevice" {device} | "deleteDevice" | "list"
// Output: one JSON line: {"ok": true, "result": ...} | {"ok": false, "error": {...}}
// The SDK always dials port 443 (it never sets a port), which the test's network namespace owns.
const { Registry, Client } = require('azure-iothub');

function finish(obj) { process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(0)); }
function failure(err) {
  return { ok: false, error: { name: err && (err.name || err.constructor.name), message: err && err.message,
    statusCode: err && err.response && err.response.statusCode } };
}

async function main(input) {
  const registry = Registry.fromConnectionString(input.connectionString);
  switch (input.action) {
    case 'getTwin': return (await registry.getTwin(input.deviceId)).responseBody;
    case 'updateTwin': {
      const twin = (await registry.getTwin(input.deviceId)).responseBody;
      return (await twin.update(input.patch)).responseBody;
    }
    case 'invokeMethod': {
      const client = Client.fromConnectionString(input.connectionString);
      const result = await client.invokeDeviceMethod(input.deviceId,
        { methodName: input.methodName, payload: input.payload, responseTimeoutInSeconds: 15 });
      return result.result;
    }
    case 'getDevice': return (await registry.get(input.deviceId)).responseBody;
    case 'createDevice':
      return (await registry.create({ deviceId: input.deviceId, status: input.status || 'enabled' })).responseBody;
    case 'updateDevice': return (await registry.update(input.device)).responseBody;
    case 'deleteDevice': await registry.delete(input.deviceId); return null;
    case 'list': return (await registry.list()).responseBody;
    default: throw new Error('unknown action ' + input.action);
  }
}

main(JSON.parse(process.argv[2]))
  .then((result) => finish({ ok: true, result: result === undefined ? null : result }))
  .catch((err) => finish(failure(err)));
