import { describe, expect, it } from "vitest";
import { Ring } from "./ring";

describe("ring", () => {
  it("keeps the newest items up to its capacity", () => {
    const r = new Ring<number>(3);
    expect(r.toArray()).toEqual([]);
    expect(r.last()).toBeUndefined();
    for (let i = 1; i <= 10_000; i++) r.push(i);
    expect(r.size).toBe(3);
    expect(r.toArray()).toEqual([9_998, 9_999, 10_000]);
    expect(r.last()).toBe(10_000);
    r.clear();
    expect(r.size).toBe(0);
    r.push(7);
    expect(r.toArray()).toEqual([7]);
  });

  it("refuses a ring of nothing", () => {
    expect(() => new Ring(0)).toThrow(RangeError);
  });
});
