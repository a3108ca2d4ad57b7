export type { LeasedPortSource } from './leased-port-source.ts';
export { DEFAULT_TRANSLATION_TIMEOUTS, MINIMUM_TRANSLATION_TIMEOUTS, resolveTimeouts } from './timeouts.ts';
export type { TranslationTimeouts } from './timeouts.ts';
export { SourcePortTranslationTable, translatedProtocolPlane } from './sptt.ts';
export type { SpttRow, SpttCounters, SpttOptions, SpttTimerClass } from './sptt.ts';
export { PortTranslator } from './translator.ts';
export type { TranslateOutcome, TranslateCounters } from './translator.ts';
