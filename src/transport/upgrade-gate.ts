// Slot accounting for upgrades, shared by both transports: sockets open plus
// upgrades still being decided count toward PGWS_MAX_CONNECTIONS, and an upgrade
// whose decision never comes loses its slot after PGWS_HANDSHAKE_TIMEOUT.

/** Frees the upgrade's slot; true only the first time (later calls are no-ops). */
export type SettleUpgrade = () => boolean;

export interface UpgradeGate {
  /**
   * Whether one more upgrade fits: `openSockets` plus pending upgrades are below the
   * limit. Asked first, always; a decision made at once needs nothing more.
   */
  hasRoom(openSockets: number): boolean;
  /**
   * Holds a slot while a decision is pending (call after hasRoom said yes, with nothing
   * run in between). `onTimeout` runs if the slot is still held when the handshake
   * timeout passes; the slot is already freed by then.
   */
  hold(onTimeout: () => void): SettleUpgrade;
}

export function createUpgradeGate(maxConnections: number | undefined, handshakeTimeoutMs: number | undefined): UpgradeGate {
  const limit = maxConnections ?? 0;
  let pending = 0;
  const hasRoom = (openSockets: number): boolean => limit <= 0 || openSockets + pending < limit;
  return {
    hasRoom,
    hold(onTimeout) {
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
