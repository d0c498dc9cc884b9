import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** The REST API's version this frontend speaks (mlopshub_lab/openapi.yaml). */
export const API_VERSION = 1;

/** An error answered by the server extension, with its JSON message and, for a refused request field (422), the field. */
export class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly field: string | null = null
  ) {
    super(message);
  }
}

/**
 * Call the server extension under /mlopshub-lab/ and return its JSON body.
 * Errors become RequestError with the server's message (DVC's or git's own text).
 */
export async function requestAPI<T>(
  endPoint: string,
  init: RequestInit = {},
  query: Record<string, string | string[] | undefined> = {}
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) {
      continue;
    }
    for (const item of Array.isArray(value) ? value : [value]) {
      params.append(key, item);
    }
  }
  const search = params.toString();
  const url = URLExt.join(settings.baseUrl, 'mlopshub-lab', endPoint) + (search ? `?${search}` : '');
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new RequestError(0, `the workspace server did not answer: ${error}`);
  }
  const text = await response.text();
  let body: any = null;
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      body = { message: text };
    }
  }
  if (!response.ok) {
    throw new RequestError(response.status, body?.message ?? response.statusText, typeof body?.field === 'string' ? body.field : null);
  }
  return body as T;
}

/** POST a JSON body. */
export function post<T>(endPoint: string, body: unknown): Promise<T> {
  return requestAPI<T>(endPoint, { method: 'POST', body: JSON.stringify(body) });
}

/** GET a file the server extension answers (a CSV export) as text; errors as RequestError with the server's message. */
export async function requestText(endPoint: string, query: Record<string, string>): Promise<string> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'mlopshub-lab', endPoint) + `?${new URLSearchParams(query)}`;
  const response = await ServerConnection.makeRequest(url, {}, settings);
  const text = await response.text();
  if (!response.ok) {
    let message = response.statusText;
    try {
      message = JSON.parse(text).message ?? message;
    } catch {
      // not JSON: keep the status text
    }
    throw new RequestError(response.status, message);
  }
  return text;
}
