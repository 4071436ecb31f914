// npm acme-client against certsync: account, order, one challenge (http-01 or dns-01), finalize, download.
// usage: node acme_client.js DIRECTORY_URL NAME http-01|dns-01 HTTP_PORT|TXT_FILE OUT_PEM
const acme = require('acme-client');
const fs = require('fs');
const http = require('http');

async function main() {
  const [directoryUrl, name, type, where, out] = process.argv.slice(2);
  const client = new acme.Client({ directoryUrl, accountKey: await acme.crypto.createPrivateRsaKey(2048) });
  await client.createAccount({ termsOfServiceAgreed: true });
  const order = await client.createOrder({ identifiers: [{ type: 'dns', value: name }] });
  const tokens = {};
  const server = type === 'http-01' ? http.createServer((req, res) => {
    const body = tokens[req.url.split('/').pop()];
    res.writeHead(body ? 200 : 404);
    res.end(body || '');
  }) : null;
  if (server) await new Promise((ok) => server.listen(Number(where), '127.0.0.1', ok));
  try {
    for (const authz of await client.getAuthorizations(order)) {
      const challenge = authz.challenges.find((c) => c.type === type);
      const keyAuthorization = await client.getChallengeKeyAuthorization(challenge);
      if (type === 'http-01') {
        tokens[challenge.token] = keyAuthorization;
      } else {
        const records = JSON.parse(fs.readFileSync(where, 'utf8'));
        records[`_acme-challenge.${authz.identifier.value}`] = [keyAuthorization];
        fs.writeFileSync(where, JSON.stringify(records));
      }
      await client.completeChallenge(challenge);
      await client.waitForValidStatus(challenge);
    }
  } finally {
    if (server) server.close();
  }
  const [, csr] = await acme.crypto.createCsr({ commonName: name, altNames: [name] },
                                               await acme.crypto.createPrivateEcdsaKey('P-256'));
  const finalized = await client.finalizeOrder(order, csr);
  fs.writeFileSync(out, await client.getCertificate(finalized));
  console.log(`ok ${finalized.status}`);
}

main().catch((err) => { console.error(`acme-client failed: ${err.message}`); process.exit(1); });
