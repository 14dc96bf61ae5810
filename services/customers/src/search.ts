/**
 * Customer search: a case-insensitive literal substring of external id, email or name.
 * Each customer stores lowercased copies of the three (`search`); a query lowercases its
 * term the same way and matches it as a regular expression in which every ASCII punctuation
 * character is escaped, so no input ever acts as a pattern or a query operator.
 */

/** The lowercased copies a customer is searched by. */
export function searchTerms(fields: { externalId: string | null; email: string | null; name: string | null }): string[] {
  const out: string[] = [];
  for (const v of [fields.externalId, fields.email, fields.name]) if (v !== null && v !== "") out.push(foldCase(v));
  return out;
}

/** The one case folding used on both sides of a match. */
export function foldCase(s: string): string {
  return s.toLowerCase();
}

// ASCII punctuation except "_". A backslash before any of these is a literal in PCRE
// (MongoDB) and in Go's RE2 (FerretDB); before a letter, a digit, "_" or a non-ASCII
// character it would be a class or an error in one of them, so those stay as they are.
const PUNCTUATION = /[!-\/:-@\[-\^`{-~]/g;

/** A regular expression matching `text` literally, anywhere in a string. */
export function literalPattern(text: string): string {
  return text.replace(PUNCTUATION, "\\$&");
}
