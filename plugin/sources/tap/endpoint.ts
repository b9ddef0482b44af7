/**
 * Which TAP endpoint an input queries. One request per window serves every enabled service:
 * `/v2/siem/all` when two or more are enabled (its arrays are split by service), else the one
 * service's own endpoint. The source, `check` and `check --online` all ask here.
 */
import type { TapServiceName } from './config.ts';

export const TAP_PATHS: Record<TapServiceName | 'all', string> = {
  clicksBlocked: '/v2/siem/clicks/blocked',
  clicksPermitted: '/v2/siem/clicks/permitted',
  messagesBlocked: '/v2/siem/messages/blocked',
  messagesDelivered: '/v2/siem/messages/delivered',
  all: '/v2/siem/all',
};

/** The path one window's request goes to, for the enabled services (canonical order, at least one). */
export function tapRequestPath(services: readonly TapServiceName[]): string {
  return services.length >= 2 ? TAP_PATHS.all : TAP_PATHS[services[0]!];
}
