// Slot accounting for upgrades, shared by both transports: sockets open plus
// upgrades still being decided count toward PGWS_MAX_CONNECTIONS, and an upgrade
// whose decision never comes loses its slot after PGWS_HANDSHAKE_TIMEOUT.

/** Frees the upgrade's slot; true only the first time (later calls are no-ops). */
export type SettleUpgrade = () => boolean;

export interface UpgradeGate {
  /** Whether one more upgrade fits now. A decision made at once needs no slot beyond this check. */
  hasRoom(openSockets: number): boolean;
  /**
   * Takes a slot, or returns undefined when `openSockets` plus pending upgrades
   * reach the limit. `onTimeout` runs if the slot is still held when the handshake
   * timeout passes; the slot is already freed by then.
   */
  admit(openSockets: number, onTimeout: () => void): SettleUpgrade | undefined;
}

export function createUpgradeGate(maxConnections: number | undefined, handshakeTimeoutMs: number | undefined): UpgradeGate {
  const limit = maxConnections ?? 0;
  let pending = 0;
  const hasRoom = (openSockets: number): boolean => limit <= 0 || openSockets + pending < limit;
  return {
    hasRoom,
    admit(openSockets, onTimeout) {
      if (!hasRoom(openSockets)) return undefined;
      pending += 1;
      let settled = false;
      const settle: SettleUpgrade = () => {
        if (settled) return false;
        settled = true;
        pending -= 1;
        if (deadline) clearTimeout(deadline);
        return true;
      };
      const deadline =
        handshakeTimeoutMs === undefined
          ? undefined
          : setTimeout(() => {
              if (settle()) onTimeout();
            }, handshakeTimeoutMs);
      return settle;
    },
  };
}
