import net from 'node:net';

/**
 * A tripwire for tests that ask the outbound guard to refuse private and metadata addresses: if
 * the guard ever let such a call through, the test would send a packet to an address that is not
 * this machine's. Installed, every TCP connect in the process to anything but loopback throws
 * instead (and is counted), so a broken guard fails the test without sending anything.
 */
export function installLoopbackOnlyTripwire(): { attempts: string[]; uninstall(): void } {
  const attempts: string[] = [];
  const original = net.Socket.prototype.connect;
  const isLoopback = (address: string) =>
    address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
  const refuse = (address: string) => {
    attempts.push(address);
    return new Error(`test tripwire: a connection to ${address} (not loopback) was attempted`);
  };
  // biome-ignore lint/suspicious/noExplicitAny: Socket.connect has many overloads; the options form is what undici uses.
  net.Socket.prototype.connect = function (this: net.Socket, ...args: any[]) {
    const options = args[0];
    if (options && typeof options === 'object' && !('path' in options && options.path)) {
      const host = String(options.host ?? 'localhost');
      if (net.isIP(host) && !isLoopback(host)) throw refuse(host);
      if (typeof options.lookup === 'function') {
        const lookup = options.lookup as net.LookupFunction;
        args[0] = {
          ...options,
          lookup: ((hostname, opts, callback) =>
            lookup(hostname, opts, (err, address, family) => {
              if (err) return callback(err, '', 0);
              const list = Array.isArray(address) ? address.map((a) => a.address) : [address];
              const bad = list.find((a) => !isLoopback(a));
              if (bad) return callback(refuse(bad) as NodeJS.ErrnoException, '', 0);
              // biome-ignore lint/suspicious/noExplicitAny: passes lookup's own result through.
              (callback as any)(null, address, family);
            })) as net.LookupFunction,
        };
      }
    }
    return original.apply(this, args as Parameters<typeof original>);
  } as typeof original;
  return {
    attempts,
    uninstall() {
      net.Socket.prototype.connect = original;
    },
  };
}
