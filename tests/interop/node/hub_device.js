'use strict';
// One device's first minute with the official, unmodified Azure IoT Node SDKs: provision with DPS
// (symmetric key or X.509), connect to the assigned hub with azure-iot-device over Mqtt or MqttWs,
// read the twin, report a property, answer direct methods, take desired-property changes and send
// telemetry.
// Input: one JSON object on argv[2]:
//   {host, idScope, registrationId, symmetricKey | x509: {cert, key}, transport: "mqtt"|"mqttws",
//    payload?, reported: {...}, telemetry: {...}, timeoutMs?}
// Output: JSON lines on stdout, one per event, as they happen:
//   {"event":"provisioned","result":...}, {"event":"twin","twin":...}, {"event":"reported"},
//   {"event":"sent"}, {"event":"desired","patch":...} (the whole desired document once after the
//   twin is read, as the SDK emits it, then each change), {"event":"method",...}; a desired
//   change with `"stop": true` ends it: {"event":"done"} (exit 0). Or {"event":"error",...}.
// The Python test drives the service side in between (desired changes, method calls).
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Client, Message } = require('azure-iot-device');

function emit(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }
function fail(err) {
  emit({ event: 'error', error: { name: err && err.name, message: err && err.message, code: err && err.code } });
  process.exit(0);
}
process.on('uncaughtException', fail);
process.on('unhandledRejection', fail);

function provisioningTransport(kind) {
  const { Mqtt, MqttWs } = require('azure-iot-provisioning-device-mqtt');
  return kind === 'mqttws' ? new MqttWs() : new Mqtt();
}

function security(input) {
  if (input.x509) {
    const { X509Security } = require('azure-iot-security-x509');
    return new X509Security(input.registrationId, input.x509);
  }
  const { SymmetricKeySecurityClient } = require('azure-iot-security-symmetric-key');
  return new SymmetricKeySecurityClient(input.registrationId, input.symmetricKey);
}

function hubClient(input, state) {
  const { Mqtt, MqttWs } = require('azure-iot-device-mqtt');
  const protocol = input.transport === 'mqttws' ? MqttWs : Mqtt;
  const hub = state.assignedHub;
  if (input.x509) {
    const client = Client.fromConnectionString(
      `HostName=${hub};DeviceId=${state.deviceId};x509=true`, protocol);
    client.setOptions({ cert: input.x509.cert, key: input.x509.key });
    return client;
  }
  return Client.fromConnectionString(
    `HostName=${hub};DeviceId=${state.deviceId};SharedAccessKey=${input.symmetricKey}`, protocol);
}

async function main(input) {
  setTimeout(() => fail({ name: 'HarnessTimeout', message: 'no end in time' }), input.timeoutMs || 60000);
  const provisioning = ProvisioningDeviceClient.create(
    input.host, input.idScope, provisioningTransport(input.transport), security(input));
  if (input.payload !== undefined) provisioning.setProvisioningPayload(input.payload);
  const state = await provisioning.register();
  emit({ event: 'provisioned', result: state });

  const client = hubClient(input, state);
  client.onDeviceMethod('reboot', (request, response) => {
    emit({ event: 'method', name: request.methodName, payload: request.payload });
    response.send(200, { rebooted: true, asked: request.payload }, (err) => { if (err) fail(err); });
  });
  await client.open();
  const twin = await client.getTwin();
  emit({ event: 'twin', twin: { desired: twin.properties.desired, reported: twin.properties.reported } });
  twin.on('properties.desired', (patch) => {
    emit({ event: 'desired', patch });
    if (patch.stop === true) finish(client);
  });
  await new Promise((resolve, reject) =>
    twin.properties.reported.update(input.reported || {}, (err) => (err ? reject(err) : resolve())));
  emit({ event: 'reported' });
  const message = new Message(JSON.stringify(input.telemetry || {}));
  message.contentType = 'application/json';
  message.contentEncoding = 'utf-8';
  message.properties.add('source', 'node');
  await client.sendEvent(message);
  emit({ event: 'sent' });
}

let finishing = false;
function finish(client) {
  if (finishing) return;
  finishing = true;
  // Give the method handler (if any pending) a moment, then leave cleanly.
  setTimeout(() => client.close(() => { emit({ event: 'done' }); process.exit(0); }), 200);
}

main(JSON.parse(process.argv[2])).catch(fail);
