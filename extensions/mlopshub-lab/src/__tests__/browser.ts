/**
 * What JupyterLab's ServerConnection takes from the browser and jsdom lacks (fetch, Headers, Request),
 * for the specs that run a view against a fake server.
 */

/** A request as the fake servers read it. */
export interface IFetched {
  url: string;
  method: string;
}

/** Install fetch (answered by `answer`), Headers and Request on the global object. */
export function installFetch(answer: (request: IFetched) => Promise<unknown>): void {
  (globalThis as any).fetch = (request: IFetched) => answer(request);
  (globalThis as any).Headers = class {
    private _map = new Map<string, string>();
    append(name: string, value: string) {
      this._map.set(name.toLowerCase(), value);
    }
    set(name: string, value: string) {
      this._map.set(name.toLowerCase(), value);
    }
    has(name: string) {
      return this._map.has(name.toLowerCase());
    }
  };
  (globalThis as any).Request = class {
    headers = new (globalThis as any).Headers();
    method: string;
    constructor(
      readonly url: string,
      init: { method?: string } = {}
    ) {
      this.method = init.method ?? 'GET';
    }
  };
}
