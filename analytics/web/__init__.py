"""The pages under /ui/: `pages` composes what each page shows from the selectors the API calls, with
the API query behind every figure; `views` reads parameters and renders."""
