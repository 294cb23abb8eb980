// node-fetch: plain Node.js. Nothing here knows about the sandbox beyond
// CORDON_RESULT_FD and CORDON_ARTIFACTS; fetch() is the global one.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');

const config = JSON.parse(fs.readFileSync(path.join(__dirname, 'config.json'), 'utf8'));
const input = JSON.parse(fs.readFileSync(0, 'utf8') || '{}');

function reply(value) {
  fs.writeFileSync(Number(process.env.CORDON_RESULT_FD), JSON.stringify(value));
}

async function main() {
  const url = input.url || config.default_url;
  try {
    const res = await fetch(url, { headers: { 'user-agent': config.user_agent } });
    const body = Buffer.from(await res.arrayBuffer());
    fs.writeFileSync(path.join(process.env.CORDON_ARTIFACTS, 'response.bin'), body);
    console.error(`fetched ${url}: ${res.status}, ${body.length} bytes`);
    reply({
      url,
      status: res.status,
      bytes: body.length,
      sha256: crypto.createHash('sha256').update(body).digest('hex'),
    });
  } catch (e) {
    const why = (e.cause && e.cause.message) || e.message;
    console.error(`fetch ${url} failed: ${why}`);
    reply({ url, error: why });
    process.exitCode = 1;
  }
}

main();
