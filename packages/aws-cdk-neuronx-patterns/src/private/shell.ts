/**
 * Quote one word for a POSIX shell, so that `shlex.split` (Python) or `sh` gives the word back unchanged.
 */
export function shellQuote(word: string): string {
  if (word !== '' && /^[A-Za-z0-9_@%+=:,./-]+$/.test(word)) {
    return word;
  }
  return `'${word.replace(/'/g, '\'"\'"\'')}'`;
}
