/** basicAuth is the `Authorization` header of HTTP basic auth for `username` and `password`. */
export function basicAuth(username: string, password: string): { Authorization: string } {
  return { Authorization: `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}` };
}
