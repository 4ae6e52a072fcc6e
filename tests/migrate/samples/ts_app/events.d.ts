// Preview server event names and a typed emitter, as a library ships them in a declaration
// file. `in out` variance and `export type *` are valid TypeScript that the bundled
// tree-sitter grammar reads as errors.
export type ServerEventName =
  | 'response.audio.delta'
  | 'response.audio_transcript.delta'
  | 'response.text.done'
  | 'session.updated';

export interface Emitter<in out T extends string> {
  on(event: T, handler: (payload: unknown) => void): void;
}

export declare function onEvent(name: 'response.audio.delta', handler: (delta: string) => void): void;

export type * from './shared';
