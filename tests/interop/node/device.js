'use strict';
// Registers one device with the official, unmodified Azure DPS Node device SDK (symmetric key).
// Input: one JSON object on argv[2] (or stdin):
//   {host, idScope, registrationId, symmetricKey | x509: {cert, key} | tpm: {port},
//    transport: "http"|"mqtt"|"mqttws"|"amqp"|"amqpws", payload?, ca?, timeoutMs?}
// Output: exactly one JSON line on stdout, exit 0:
//   {"ok": true, "result": <registrationState>} | {"ok": false, "error": {...}}
// Exit code != 0 only for harness bugs (bad input).
//
// Ports: Http always dials host:443 (`host:port` is not parsed; Node tries to resolve "host:port").
// Mqtt dials 'mqtts://' + host, parsed by mqtt.js, so "host:port" works (default 8883).
// MqttWs dials 'wss://' + host + ':443/$iothub/websocket', so 443 is fixed.
// Amqp dials 'amqps://' + host, so "host:port" works (default 5671); AmqpWs, like MqttWs, 443.
const fs = require('fs');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');

let finished = false;
function finish(obj) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(obj) + '\n', () => process.exit(0));
}

function describeError(err) {
  if (!err || typeof err !== 'object') return { name: 'Error', message: String(err) };
  const out = { name: err.name || (err.constructor && err.constructor.name), message: err.message };
  if (err.code !== undefined) out.code = err.code;
  if (err.result !== undefined) out.result = err.result;
  // Http: RestApiClient errors carry response (IncomingMessage) and responseBody (string);
  // DeviceRegistrationFailedError carries response too. Mqtt errors carry transportObject {topic, payload}.
  const resp = err.response || err.transportObject;
  if (resp && resp.statusCode !== undefined) out.statusCode = resp.statusCode;
  if (resp && resp.topic) {
    out.topic = resp.topic;
    const m = /^\$dps\/registrations\/res\/(\d+)\//.exec(resp.topic);
    if (m) out.statusCode = Number(m[1]);
  }
  if (err.responseBody !== undefined) out.responseBody = err.responseBody;
  // Amqp: a rejected request reaches the callback as the raw AMQP error {condition, description};
  // errors from the connection or a link carry it as amqpError.
  const amqpError = err.condition !== undefined ? err : err.amqpError;
  if (amqpError && amqpError.condition !== undefined) {
    out.condition = amqpError.condition;
    out.description = amqpError.description;
  }
  return out;
}

// Security clients: symmetricKey (default), x509 {cert, key} (PEM text; cert may hold the chain),
// or tpm {port}: a TPM simulator (swtpm) on 127.0.0.1:port, reached the way official-clients.md says.
function makeSecurity(input) {
  if (input.x509) {
    const { X509Security } = require('azure-iot-security-x509');
    return new X509Security(input.registrationId, { cert: input.x509.cert, key: input.x509.key });
  }
  if (input.tpm) {
    const { TpmSecurityClient } = require('azure-iot-security-tpm');
    return new TpmSecurityClient(input.registrationId || undefined, tpmAt(input.tpm.port));
  }
  if (!input.registrationId || !input.symmetricKey) throw new Error('missing registrationId/symmetricKey');
  return new SymmetricKeySecurityClient(input.registrationId, input.symmetricKey);
}

function tpmAt(port) {
  const tpm = new (require('tss.js').Tpm)(false);
  tpm.device = new (require('tss.js/lib/TpmDevice.js').TpmTcpDevice)('127.0.0.1', port, true);
  return tpm;
}

// {"action": "tpm-info", "tpm": {"port": P}} prints the EK (base64 TPM2B_PUBLIC) and the
// registration id the SDK derives from it: what an operator enrolls.
function tpmInfo(input) {
  const { TpmSecurityClient } = require('azure-iot-security-tpm');
  const client = new TpmSecurityClient(undefined, tpmAt(input.tpm.port));
  client.getEndorsementKey((err, ek) => {
    if (err) return finish({ ok: false, error: describeError(err) });
    client.getRegistrationId((err2, registrationId) => {
      if (err2) return finish({ ok: false, error: describeError(err2) });
      finish({ ok: true, result: { endorsementKey: Buffer.from(ek).toString('base64'), registrationId } });
    });
  });
}

function main(input) {
  const transports = {
    http: () => new (require('azure-iot-provisioning-device-http').Http)(),
    mqtt: () => new (require('azure-iot-provisioning-device-mqtt').Mqtt)(),
    mqttws: () => new (require('azure-iot-provisioning-device-mqtt').MqttWs)(),
    amqp: () => new (require('azure-iot-provisioning-device-amqp').Amqp)(),
    amqpws: () => new (require('azure-iot-provisioning-device-amqp').AmqpWs)(),
  };
  const make = transports[input.transport || 'http'];
  if (!make) throw new Error('unknown transport ' + input.transport);
  setTimeout(() => finish({ ok: false, error: { name: 'HarnessTimeout' } }), input.timeoutMs || 60000);
  if (input.action === 'tpm-info') return tpmInfo(input);
  for (const k of ['host', 'idScope']) {
    if (!input[k]) throw new Error('missing field ' + k);
  }

  const transport = make();
  if (input.ca) {
    // The transports take their base only as a (private) constructor argument; set the CA on it.
    const base = transport._httpBase || transport._mqttBase;
    if (!base) throw new Error('cannot find transport base to set ca on');
    base.setOptions({ ca: fs.readFileSync(input.ca, 'utf8') });
  }
  const security = makeSecurity(input);
  const client = ProvisioningDeviceClient.create(input.host, input.idScope, transport, security);
  if (input.payload !== undefined) client.setProvisioningPayload(input.payload);
  client.register((err, result) => {
    if (err) finish({ ok: false, error: describeError(err) });
    else finish({ ok: true, result: result === undefined ? null : result });
  });
}

// An exception thrown inside the SDK (e.g. it cannot parse what the server sent) is a test outcome.
const onUncaught = (err) => finish({ ok: false, error: Object.assign(describeError(err), { uncaught: true }) });
process.on('uncaughtException', onUncaught);
process.on('unhandledRejection', onUncaught);

function start(text) {
  let input;
  try {
    input = JSON.parse(text);
    main(input);
  } catch (err) {
    if (finished) return;
    process.stderr.write('harness error: ' + (err && err.stack || err) + '\n');
    process.exit(2);
  }
}

if (process.argv[2] !== undefined) start(process.argv[2]);
else {
  let data = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (c) => { data += c; });
  process.stdin.on('end', () => start(data));
}
