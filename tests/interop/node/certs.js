'use strict';
// Makes a certificate with the `pem` package, the way Node users' scripts make device and test
// certificates (`openssl req` then `openssl x509 -req` without an extension file: X.509 v1).
// Input: one JSON object on argv[2]:
//   {commonName, days?, selfSigned?: true, serviceCertificate?: PEM, serviceKey?: PEM}
//   (a serviceCertificate/serviceKey pair signs the new certificate instead of its own key)
// Output: one JSON line on stdout, exit 0: {"ok": true, "result": {"cert": PEM, "key": PEM}}
//   or {"ok": false, "error": {name, message}}. Exit code != 0 only for bad input.
const pem = require('pem');

function main(input) {
  if (!input.commonName) throw new Error('missing commonName');
  const options = { commonName: input.commonName, days: input.days || 365 };
  if (input.serviceCertificate) {
    options.serviceCertificate = input.serviceCertificate;
    options.serviceKey = input.serviceKey;
  } else {
    options.selfSigned = true;
  }
  pem.createCertificate(options, (err, keys) => {
    const out = err
      ? { ok: false, error: { name: err.name, message: err.message } }
      : { ok: true, result: { cert: keys.certificate, key: keys.clientKey } };
    process.stdout.write(JSON.stringify(out) + '\n', () => process.exit(0));
  });
}

try {
  main(JSON.parse(process.argv[2]));
} catch (err) {
  process.stderr.write('harness error: ' + (err && err.stack || err) + '\n');
  process.exit(2);
}
