// Runs the unmodified MCP reference server (@modelcontextprotocol/server-everything) in streamable
// HTTP mode (POST/GET/DELETE on /mcp, port from PORT) bound to 127.0.0.1 only: its own entry point
// listens on every interface, so `listen(port)` gets a loopback host added before it is imported.
import net from 'node:net';

const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
  const port = args[0];
  const isPort = typeof port === 'number' || (typeof port === 'string' && /^\d+$/.test(port));
  if (isPort && typeof args[1] !== 'string') args.splice(1, 0, '127.0.0.1');
  return listen.apply(this, args);
};

await import('@modelcontextprotocol/server-everything/dist/transports/streamableHttp.js');
