// Everything a test starts registers its disposer here; setup.ts drains the
// list after each file, so a forgotten teardown leaks nothing.
type Dispose = () => unknown;

const leftovers: Dispose[] = [];

export function track(dispose: Dispose): void {
  leftovers.push(dispose);
}

export async function disposeAll(): Promise<void> {
  // Last started, first stopped: servers before their databases.
  while (leftovers.length > 0) {
    const dispose = leftovers.pop();
    try {
      await dispose?.();
    } catch {
      // Teardown must go on; a failed disposer must not hide the test's own result.
    }
  }
}
