// cordon: make Node's global fetch() use the sandbox's filtering proxy.
//
// Node's fetch (undici, bundled since Node 18) ignores HTTP_PROXY and
// HTTPS_PROXY, and inside a cordon sandbox the proxy is the only route out.
// When a plugin's policy allows a host, `cordon exec` loads this file with
// NODE_OPTIONS=--require, so the plugin's own code stays ordinary
// `await fetch(url)`. It installs, as undici's global dispatcher, an Agent
// whose every connection is a CONNECT tunnel through the proxy; TLS runs
// inside the tunnel, end to end with the server, so certificates are checked
// as usual. The proxy applies the policy to the CONNECT target and answers a
// refused one with 403; the refusal's text becomes the cause of fetch's
// "fetch failed" error. Only Node's built-in modules are used.
'use strict';
(function installCordonFetchProxy() {
  const raw = process.env.HTTPS_PROXY || process.env.https_proxy || process.env.HTTP_PROXY || process.env.http_proxy;
  if (!raw) return;
  let proxy;
  try {
    proxy = new URL(raw);
  } catch {
    return;
  }
  const proxyHost = proxy.hostname.replace(/^\[|\]$/g, '');
  const proxyPort = Number(proxy.port) || 3128;
  // undici keeps its dispatcher under this well-known symbol, shared by the
  // bundled copy and the npm package. Touching a lazily exposed fetch class
  // loads the bundled undici, which installs its default Agent there.
  const KEY = Symbol.for('undici.globalDispatcher.1');
  void globalThis.Headers;
  const current = globalThis[KEY];
  if (!current || typeof current.constructor !== 'function') {
    process.emitWarning("cordon: cannot find fetch's dispatcher; fetch() cannot use the proxy", 'CordonWarning');
    return;
  }
  const Agent = current.constructor;
  const net = require('node:net');
  const tls = require('node:tls');

  function tunnel(opts, callback) {
    const https = opts.protocol === 'https:';
    const bare = String(opts.hostname).replace(/^\[|\]$/g, '');
    const port = Number(opts.port) || (https ? 443 : 80);
    const target = `${bare.includes(':') ? `[${bare}]` : bare}:${port}`;
    let settled = false;
    const settle = (err, socket) => {
      if (settled) return;
      settled = true;
      callback(err, socket);
    };
    const sock = net.connect(proxyPort, proxyHost);
    sock.setNoDelay(true);
    sock.once('error', (err) => settle(err));
    sock.once('connect', () => sock.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`));
    let head = Buffer.alloc(0);
    const onReadable = () => {
      let chunk;
      while ((chunk = sock.read()) !== null) {
        head = Buffer.concat([head, chunk]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) {
          if (head.length > 65536) {
            sock.destroy();
            settle(new Error(`cordon proxy: oversized answer to CONNECT ${target}`));
          }
          continue;
        }
        sock.removeListener('readable', onReadable);
        const status = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
        const rest = head.subarray(end + 4);
        if (!/^HTTP\/1\.[01] 200/.test(status)) {
          refused(status, rest);
          return;
        }
        if (rest.length) sock.unshift(rest);
        if (!https) {
          sock.removeAllListeners('error');
          settle(null, sock);
          return;
        }
        const servername = opts.servername || (net.isIP(bare) ? undefined : bare);
        const secure = tls.connect({ socket: sock, servername, ALPNProtocols: ['http/1.1'] });
        secure.once('error', (err) => settle(err));
        secure.once('secureConnect', () => {
          secure.removeAllListeners('error');
          settle(null, secure);
        });
        return;
      }
    };
    const refused = (status, rest) => {
      // The proxy explains a refusal in the body and closes the connection.
      let body = rest;
      const done = () => {
        const why = body.toString('utf8').trim();
        settle(new Error(`cordon proxy refused ${target}: ${status}${why ? ` - ${why}` : ''}`));
      };
      sock.on('data', (c) => {
        if (body.length < 4096) body = Buffer.concat([body, c]);
      });
      sock.once('end', done);
      sock.once('close', done);
      setTimeout(() => {
        done();
        sock.destroy();
      }, 1000).unref();
    };
    sock.on('readable', onReadable);
  }

  globalThis[KEY] = new Agent({ connect: tunnel });
})();
