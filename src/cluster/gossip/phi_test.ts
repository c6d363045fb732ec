import assert from "node:assert/strict";
import fc from "fast-check";
import { ArrivalWindow, PHI_SAMPLES_MAX, PHI_SAMPLES_MIN } from "./phi.ts";

const OPTS = { bootstrapMs: 400, meanMsMin: 100 };

Deno.test("ArrivalWindow.phi() is 0 at an arrival and grows as silence / (mean · ln 10)", () => {
  const w = new ArrivalWindow(OPTS, 1000);
  assert.equal(w.phi(1000), 0);
  assert.equal(w.phi(900), 0, "a time before the last arrival is no silence");
  assert.ok(Math.abs(w.phi(1000 + 400 * Math.LN10) - 1) < 1e-12);
  assert.ok(Math.abs(w.phi(1000 + 8 * 400 * Math.LN10) - 8) < 1e-9);
});

Deno.test("ArrivalWindow uses the bootstrap mean until PHI_SAMPLES_MIN samples, then the measured one", () => {
  const w = new ArrivalWindow(OPTS, 0);
  let t = 0;
  for (let i = 1; i < PHI_SAMPLES_MIN; i++) {
    t += 200;
    w.record(t);
    assert.equal(w.mean(), 400, `after ${i} samples`);
  }
  t += 200;
  w.record(t);
  assert.equal(w.samples, PHI_SAMPLES_MIN);
  assert.equal(w.mean(), 200);
});

Deno.test("ArrivalWindow never takes the mean below meanMsMin", () => {
  const w = new ArrivalWindow(OPTS, 0);
  for (let t = 1; t <= 50; t++) w.record(t);
  assert.equal(w.mean(), 100);
});

Deno.test("ArrivalWindow.restart() moves the last arrival without adding a sample", () => {
  const w = new ArrivalWindow(OPTS, 0);
  for (let t = 200; t <= 2000; t += 200) w.record(t);
  const n = w.samples;
  w.restart(60_000);
  assert.equal(w.samples, n);
  assert.equal(w.mean(), 200, "the outage did not enter the mean");
  assert.equal(w.phi(60_000), 0);
  w.restart(10);
  assert.equal(w.lastMs, 60_000, "restart never moves the last arrival back");
});

Deno.test("ArrivalWindow.record() ignores an arrival that is not later than the last", () => {
  const w = new ArrivalWindow(OPTS, 100);
  w.record(100);
  w.record(50);
  assert.equal(w.samples, 0);
  assert.equal(w.lastMs, 100);
});

Deno.test("ArrivalWindow rejects samplesMax outside 1..PHI_SAMPLES_MAX and non-positive means", () => {
  for (const samplesMax of [0, PHI_SAMPLES_MAX + 1, 1.5]) {
    assert.throws(() => new ArrivalWindow({ ...OPTS, samplesMax }, 0), RangeError);
  }
  assert.throws(() => new ArrivalWindow({ bootstrapMs: 0, meanMsMin: 1 }, 0), RangeError);
  assert.throws(() => new ArrivalWindow({ bootstrapMs: 1, meanMsMin: NaN }, 0), RangeError);
});

Deno.test("ArrivalWindow's mean is that of the newest samplesMax intervals (property)", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: PHI_SAMPLES_MAX }),
      fc.array(fc.integer({ min: 1, max: 10_000 }), { minLength: 1, maxLength: 300 }),
      (samplesMax, intervals) => {
        const w = new ArrivalWindow({ samplesMax, bootstrapMs: 1, meanMsMin: 1e-9 }, 0);
        let t = 0;
        for (const i of intervals) {
          t += i;
          w.record(t);
        }
        const kept = intervals.slice(-samplesMax);
        assert.equal(w.samples, kept.length);
        const want = kept.length < PHI_SAMPLES_MIN ? 1 : kept.reduce((a, b) => a + b) / kept.length;
        assert.ok(Math.abs(w.mean() - want) < 1e-6 * want, `${w.mean()} vs ${want}`);
      },
    ),
  );
});

Deno.test("ArrivalWindow.phi() never decreases with silence and is never negative (property)", () => {
  fc.assert(
    fc.property(
      fc.array(fc.integer({ min: 1, max: 5_000 }), { maxLength: 30 }),
      fc.array(fc.integer({ min: 0, max: 100_000 }), { minLength: 2, maxLength: 10 }),
      (intervals, probes) => {
        const w = new ArrivalWindow(OPTS, 0);
        let t = 0;
        for (const i of intervals) w.record(t += i);
        let last = -1;
        for (const p of [...probes].sort((a, b) => a - b)) {
          const phi = w.phi(t + p);
          assert.ok(phi >= 0 && phi >= last);
          last = phi;
        }
      },
    ),
  );
});
