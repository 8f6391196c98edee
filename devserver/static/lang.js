// The page language, shared by the journey page (ui.js) and the researchers' page
// (research.js): which one to start with, and switching (the buttons, <html lang>, and
// remembering the choice in localStorage). Each page passes its own texts and key.
"use strict";

window.PageLanguage = (function () {
  // The saved choice if the page has texts for it, else the browser's first language the
  // page has, else English.
  function initial(texts, storageKey) {
    try {
      const saved = localStorage.getItem(storageKey);
      if (saved && texts[saved]) return saved;
    } catch (e) { /* private mode */ }
    const wanted = navigator.languages && navigator.languages.length
      ? navigator.languages : [navigator.language || "en"];
    for (const tag of wanted) {
      const base = String(tag).toLowerCase().split("-")[0];
      if (texts[base]) return base;
    }
    return "en";
  }

  // Switch to `next` (English when the page has no texts for it); returns the language set.
  function apply(next, texts, storageKey) {
    const lang = texts[next] ? next : "en";
    document.documentElement.lang = lang;
    for (const button of document.querySelectorAll("button.lang")) {
      button.setAttribute("aria-pressed", String(button.dataset.lang === lang));
    }
    try { localStorage.setItem(storageKey, lang); } catch (e) { /* private mode */ }
    return lang;
  }

  return { initial, apply };
})();
