/**
 * Where the canary controller and the dashboard read metrics from. A scrape
 * keeps each target's samples apart: counters are differenced per target, so
 * a restarted sidecar (counter reset) or a missing target never corrupts the
 * sum. Tests feed a fake source; production scrapes the sidecars' /metrics.
 */
import { parsePrometheusText, type Sample } from './prom';

export interface TargetScrape {
  target: string;
  /** Absent when the target could not be read; `error` says why. */
  samples?: Sample[];
  error?: string;
}

export interface Scrape {
  /** Milliseconds (the source's clock) when the scrape was taken. */
  at: number;
  targets: TargetScrape[];
}

export interface MetricsSource {
  scrape(): Promise<Scrape>;
}

export interface HttpMetricsSourceOptions {
  /** URLs of /metrics endpoints, or a function giving the current list (targets come and go). */
  urls: string[] | (() => string[] | Promise<string[]>);
  timeoutMs?: number;
  now?: () => number;
}

/** Scrapes every URL concurrently; a failing target is reported, not thrown. */
export function httpMetricsSource(opts: HttpMetricsSourceOptions): MetricsSource {
  const timeoutMs = opts.timeoutMs ?? 2000;
  const now = opts.now ?? Date.now;
  return {
    async scrape() {
      const urls = typeof opts.urls === 'function' ? await opts.urls() : opts.urls;
      const at = now();
      const targets = await Promise.all(urls.map(async (url): Promise<TargetScrape> => {
        try {
          const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
          if (!res.ok) return { target: url, error: `HTTP ${res.status}` };
          return { target: url, samples: parsePrometheusText(await res.text(), url) };
        } catch (err: any) {
          const cause = err?.cause?.code ?? err?.cause?.message;
          return { target: url, error: cause ? `${err.message} (${cause})` : String(err?.message ?? err) };
        }
      }));
      return { at, targets };
    },
  };
}

/** A source over in-process text (e.g. a prom-client registry), for agents that embed components. */
export function textMetricsSource(read: () => Record<string, string> | Promise<Record<string, string>>, now: () => number = Date.now): MetricsSource {
  return {
    async scrape() {
      const texts = await read();
      const at = now();
      return {
        at,
        targets: Object.entries(texts).map(([target, text]) => {
          try {
            return { target, samples: parsePrometheusText(text, target) };
          } catch (err: any) {
            return { target, error: String(err?.message ?? err) };
          }
        }),
      };
    },
  };
}
