import { afterEach, describe, expect, it, vi } from 'vitest';
import { backoffMs, MAX_TIMEOUT_MS, timer } from '../src/timer.js';

afterEach(() => {
  vi.useRealTimers();
});

describe('timer', () => {
  it('fires after a delay longer than setTimeout can wait (over 24.8 days), not at once', () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    const days40 = 40 * 24 * 3600 * 1000;
    expect(days40).toBeGreaterThan(MAX_TIMEOUT_MS);
    timer(fn, days40).start();
    vi.advanceTimersByTime(1000);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(MAX_TIMEOUT_MS);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(days40 - MAX_TIMEOUT_MS - 1000 - 1);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(1);
    expect(fn).toHaveBeenCalledTimes(1);
  });

  it('fires at once for a delay already past, and never after cancel', () => {
    vi.useFakeTimers();
    const past = vi.fn();
    timer(past, -5).start();
    vi.advanceTimersByTime(0);
    expect(past).toHaveBeenCalledTimes(1);
    const cancelled = vi.fn();
    const t = timer(cancelled, 100);
    t.start();
    t.cancel();
    vi.advanceTimersByTime(1000);
    expect(cancelled).not.toHaveBeenCalled();
  });

  it('restarts the countdown on start()', () => {
    vi.useFakeTimers();
    const fn = vi.fn();
    const t = timer(fn, 100);
    t.start();
    vi.advanceTimersByTime(90);
    t.start();
    vi.advanceTimersByTime(90);
    expect(fn).not.toHaveBeenCalled();
    vi.advanceTimersByTime(10);
    expect(fn).toHaveBeenCalledTimes(1);
  });
});

describe('backoffMs', () => {
  it.each([
    [0, 1000],
    [1, 2000],
    [2, 4000],
    [5, 32_000],
    [9, 32_000],
  ])('attempt %i without jitter waits %i ms (1 s doubling, capped at 32 s)', (attempt, expected) => {
    expect(backoffMs(attempt, 1000, 32_000, false)).toBe(expected);
  });

  it('with jitter stays between half and all of the step', () => {
    for (let i = 0; i < 100; i++) {
      const v = backoffMs(3, 100, 10_000);
      expect(v).toBeGreaterThanOrEqual(400);
      expect(v).toBeLessThanOrEqual(800);
    }
  });
});

describe('expiry schedule (one timer per distinct exp)', () => {
  it('expires each item when its exp passes, sharing one timer per exp, and never a removed one', async () => {
    const { createExpirySchedule } = await import('../src/expiry.js');
    vi.useFakeTimers();
    const now = Date.now() / 1000;
    const expired: string[] = [];
    const schedule = createExpirySchedule<string>((item) => expired.push(item));
    schedule.add('a', now + 10);
    schedule.add('b', now + 10);
    schedule.add('c', now + 20);
    schedule.add('gone', now + 10);
    schedule.remove('gone');
    // One timer per distinct exp: two, whatever the number of items.
    expect(vi.getTimerCount()).toBe(2);
    vi.advanceTimersByTime(9_999);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(expired).toEqual(['a', 'b']);
    // Moving an item (a refreshed token) takes it out of its old exp.
    schedule.add('c', now + 40);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(10_000);
    expect(expired).toEqual(['a', 'b']);
    vi.advanceTimersByTime(20_000);
    expect(expired).toEqual(['a', 'b', 'c']);
    expect(schedule.size()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('expires an exp months away on time (over 24.8 days), not at once', async () => {
    const { createExpirySchedule } = await import('../src/expiry.js');
    vi.useFakeTimers();
    const expired: string[] = [];
    const schedule = createExpirySchedule<string>((item) => expired.push(item));
    const days40 = 40 * 24 * 3600;
    schedule.add('long', Date.now() / 1000 + days40);
    vi.advanceTimersByTime(MAX_TIMEOUT_MS + 1000);
    expect(expired).toEqual([]);
    vi.advanceTimersByTime(days40 * 1000 - MAX_TIMEOUT_MS - 1000);
    expect(expired).toEqual(['long']);
  });
});
