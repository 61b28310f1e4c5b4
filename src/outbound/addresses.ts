/**
 * Which addresses a call to a client's URL may connect to: the address classes (ipaddr.js knows
 * the special ranges; nothing here parses an address by hand) and the operator's allowlist.
 *
 * The rule is an allowlist of one class: a public (global unicast) address. Everything else is
 * refused with the name of its class, so the log and the CLI say why. Addresses that embed an IPv4
 * address (IPv4-mapped, IPv4-translated, NAT64) are judged by the address they embed.
 */

import ipaddr from 'ipaddr.js';

type Address = ipaddr.IPv4 | ipaddr.IPv6;

/**
 * Cloud metadata services. Most sit in a class that is refused anyway (link-local, CGNAT,
 * unique-local); Azure's wire server is a public address, so it has to be named. The allowlist
 * never opens these.
 */
const METADATA: ReadonlyArray<[Address, number]> = [
  '169.254.169.254/32', // AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean instance metadata
  '169.254.170.2/32', // AWS ECS task metadata and credentials
  '169.254.170.23/32', // AWS EKS pod identity
  'fd00:ec2::254/128', // AWS instance metadata over IPv6
  'fd00:ec2::23/128', // AWS EKS pod identity over IPv6
  '100.100.100.200/32', // Alibaba Cloud metadata
  '168.63.129.16/32', // Azure wire server (a public address)
].map((cidr) => ipaddr.parseCIDR(cidr));

/** IPv4-compatible IPv6 (::a.b.c.d, deprecated): ipaddr.js files it under unicast. */
const IPV4_COMPATIBLE = ipaddr.parseCIDR('::/96');
/** IPv6 global unicast (RFC 4291): outside it nothing is a public destination. */
const GLOBAL_UNICAST_V6 = ipaddr.parseCIDR('2000::/3');

export interface AddressVerdict {
  allowed: boolean;
  /** The class, e.g. 'public', 'loopback', 'private', 'metadata', 'ipv4Mapped of private'. */
  range: string;
}

/** The class of an address as the guard names it ('public' for the one allowed class). */
export function classify(address: string): AddressVerdict {
  let ip: Address;
  try {
    ip = ipaddr.parse(address);
  } catch {
    return { allowed: false, range: 'not an IP address' };
  }
  if (isMetadata(ip)) return { allowed: false, range: 'metadata' };
  if (ip.kind() === 'ipv4') {
    const range = (ip as ipaddr.IPv4).range();
    return range === 'unicast' ? { allowed: true, range: 'public' } : { allowed: false, range };
  }
  const v6 = ip as ipaddr.IPv6;
  const range = v6.range();
  if (range === 'ipv4Mapped' || range === 'rfc6145' || range === 'rfc6052') {
    // The last 32 bits are the IPv4 address it reaches: 64:ff9b::a00:1 is 10.0.0.1 via NAT64.
    const embedded = ipaddr.fromByteArray(v6.toByteArray().slice(12)).toString();
    const inner = classify(embedded);
    return inner.allowed ? inner : { allowed: false, range: `${range} of ${inner.range}` };
  }
  if (range !== 'unicast') return { allowed: false, range };
  if (v6.match(IPV4_COMPATIBLE)) return { allowed: false, range: 'ipv4Compatible' };
  if (!v6.match(GLOBAL_UNICAST_V6)) return { allowed: false, range: 'reserved' };
  return { allowed: true, range: 'public' };
}

function isMetadata(ip: Address): boolean {
  const plain =
    ip.kind() === 'ipv6' && (ip as ipaddr.IPv6).isIPv4MappedAddress()
      ? (ip as ipaddr.IPv6).toIPv4Address()
      : ip;
  return METADATA.some(([net, bits]) => net.kind() === plain.kind() && plain.match(net, bits));
}

/** Metadata and unspecified addresses stay refused whatever the allowlist says. */
export function neverAllowed(verdict: AddressVerdict): boolean {
  return (
    verdict.range === 'metadata' || verdict.range === 'unspecified' || verdict.range.endsWith(' of metadata')
  );
}

/**
 * The operator's allowlist (OUTBOUND_ALLOWLIST): host names (exact, case-insensitive) whose
 * addresses are permitted whatever their class, and CIDRs (or single addresses) that are
 * permitted whatever host name led to them. Local work and tests use it for loopback endpoints;
 * production normally leaves it empty. Metadata and unspecified addresses are never permitted.
 */
export class Allowlist {
  private constructor(
    private readonly hosts: ReadonlySet<string>,
    private readonly networks: ReadonlyArray<[Address, number]>,
    /** As written, for messages. */
    readonly entries: readonly string[],
  ) {}

  static readonly EMPTY = new Allowlist(new Set(), [], []);

  /**
   * "localhost, 127.0.0.0/8, ::1, tools.internal": comma or space separated. Throws naming the
   * entry that is neither a host name nor an address or CIDR.
   */
  static parse(text: string | undefined | null): Allowlist {
    const entries = (text ?? '')
      .split(/[\s,]+/)
      .map((e) => e.trim())
      .filter(Boolean);
    const hosts = new Set<string>();
    const networks: Array<[Address, number]> = [];
    for (const raw of entries) {
      const entry = raw.replace(/^\[(.*)\]$/, '$1');
      if (ipaddr.isValidCIDR(entry)) networks.push(ipaddr.parseCIDR(entry));
      else if (ipaddr.isValid(entry)) {
        const ip = ipaddr.parse(entry);
        networks.push([ip, ip.kind() === 'ipv4' ? 32 : 128]);
      } else if (
        /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i.test(
          entry,
        )
      ) {
        hosts.add(entry.toLowerCase().replace(/\.$/, ''));
      } else {
        throw new Error(`"${raw}" is neither a host name nor an IP address or CIDR`);
      }
    }
    return new Allowlist(hosts, networks, entries);
  }

  get empty(): boolean {
    return this.entries.length === 0;
  }

  permitsHost(host: string): boolean {
    return this.hosts.has(host.toLowerCase().replace(/\.$/, ''));
  }

  permitsAddress(address: string): boolean {
    let ip: Address;
    try {
      ip = ipaddr.process(address);
    } catch {
      return false;
    }
    return this.networks.some(([net, bits]) => net.kind() === ip.kind() && ip.match(net, bits));
  }

  /** The verdict for `address`, reached through `host`, with this allowlist applied. */
  judge(host: string, address: string): AddressVerdict {
    const verdict = classify(address);
    if (verdict.allowed || neverAllowed(verdict)) return verdict;
    if (this.permitsHost(host) || this.permitsAddress(address)) {
      return { allowed: true, range: `${verdict.range}, allowlisted` };
    }
    return verdict;
  }
}

/** A URL host as an address, when it is one (`[::1]` → `::1`); undefined for a host name. */
export function literalAddress(hostname: string): string | undefined {
  const bare = hostname.replace(/^\[(.*)\]$/, '$1');
  return ipaddr.isValid(bare) && (bare.includes(':') || ipaddr.IPv4.isValidFourPartDecimal(bare))
    ? bare
    : undefined;
}
