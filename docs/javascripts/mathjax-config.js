// MathJax settings for pymdownx.arithmatex (generic mode): typeset only the
// spans and divs that arithmatex marks. The theme's instant navigation is
// off, so every page load typesets its own page.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex",
  },
};
