// A paced player for a journey's steps: each step appears in turn, at a pace a child can
// follow, however fast the steps arrive; with pause, step back and forth, show all, replay.
// It knows nothing of the page: the caller says which entries are steps and how to show one.
"use strict";

/**
 * Makes a player.
 *
 * options.stepMs   time between two steps (0: every step at once)
 * options.isStep   entry -> whether it is a visible step (others go with the next step)
 * options.apply    entry -> shows one entry on the page
 * options.reset    () -> clears the page's journey (before showing entries again)
 * options.changed  state -> called after every change: {shown, total, playing, caughtUp, closed}
 *
 * Entries are kept in arrival order; the caller pushes each entry once.
 */
window.JourneyPlayer = function JourneyPlayer(options) {
  const entries = [];
  let shown = 0; // entries applied to the page
  let playing = true; // steps advance on their own
  let instant = options.stepMs <= 0; // "show all": no more pacing for this journey
  let closed = false; // no more entries will come
  let timer = null;

  // The index just after the next step that starts at ``from``: entries that are not
  // steps go with the step that follows them (a stage's start with its first content).
  function stepEnd(from) {
    let i = from;
    while (i < entries.length) {
      const visible = options.isStep(entries[i]);
      i += 1;
      if (visible) break;
    }
    return i;
  }

  function advance() {
    if (shown >= entries.length) return false;
    const end = stepEnd(shown);
    while (shown < end) {
      options.apply(entries[shown]);
      shown += 1;
    }
    return true;
  }

  function countSteps(upTo) {
    let n = 0;
    for (let i = 0; i < upTo; i += 1) if (options.isStep(entries[i])) n += 1;
    return n;
  }

  function state() {
    return {
      shown: countSteps(shown),
      total: countSteps(entries.length),
      playing,
      caughtUp: shown >= entries.length,
      closed,
    };
  }

  function changed() {
    options.changed(state());
  }

  function stopTimer() {
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  // One step now, the next after the pace; an entry that arrives while the player waits
  // for nothing (a slow backend) is shown at once.
  function tick() {
    if (timer !== null || !playing) return;
    if (instant) {
      while (advance()) { /* everything that has arrived */ }
      changed();
      return;
    }
    if (!advance()) {
      changed();
      return;
    }
    changed();
    timer = setTimeout(() => {
      timer = null;
      tick();
    }, options.stepMs);
  }

  function renderUpTo(index) {
    stopTimer();
    options.reset();
    shown = 0;
    while (shown < index) {
      options.apply(entries[shown]);
      shown += 1;
    }
  }

  // Where each step ends: [end of step 1, end of step 2, …].
  function boundaries() {
    const ends = [];
    let i = 0;
    while (i < entries.length) {
      i = stepEnd(i);
      ends.push(i);
    }
    return ends;
  }

  return {
    push(entry) {
      entries.push(entry);
      tick();
    },
    close() {
      closed = true;
      changed();
    },
    pause() {
      playing = false;
      stopTimer();
      changed();
    },
    play() {
      playing = true;
      tick();
      changed();
    },
    forward() {
      playing = false;
      stopTimer();
      advance();
      changed();
    },
    back() {
      const ends = boundaries().filter((end) => end < shown);
      // Never back to nothing: the first step stays.
      const target = ends.length ? ends[ends.length - 1] : Math.min(shown, stepEnd(0));
      playing = false;
      renderUpTo(target);
      changed();
    },
    all() {
      instant = true;
      playing = true;
      stopTimer();
      tick();
    },
    replay() {
      instant = options.stepMs <= 0;
      playing = true;
      renderUpTo(0);
      tick();
      changed();
    },
    stop() {
      playing = false;
      stopTimer();
    },
    state,
  };
};
