// A Preview-era TypeScript client (self-written sample): its own Preview session types, one
// update checked against them, one built untyped, one typed with openai-node's GA type, and a
// send helper whose parameter is a Preview type.
import type { RealtimeClientEvent } from 'openai/resources/realtime/realtime';
import type { ServerEventName } from './events';

export interface RealtimeSessionConfig {
  modalities?: string[];
  instructions?: string;
  voice?: string;
  input_audio_format?: 'pcm16' | 'g711_ulaw' | 'g711_alaw';
  turn_detection?: { type: 'server_vad'; silence_duration_ms?: number } | null;
}

export interface SessionUpdateCommand {
  type: 'session.update';
  session: RealtimeSessionConfig;
}

export interface Socket {
  send(data: string): void;
}

export function sendCommand(socket: Socket, command: SessionUpdateCommand): void {
  socket.send(JSON.stringify(command));
}

export function configure(socket: Socket): ServerEventName[] {
  const typed: SessionUpdateCommand = {
    type: 'session.update',
    session: { modalities: ['text', 'audio'], voice: 'alloy', input_audio_format: 'pcm16' },
  };
  socket.send(JSON.stringify(typed));
  sendCommand(socket, { type: 'session.update', session: { instructions: 'Be brief.', voice: 'echo' } });

  const untyped = {
    type: 'session.update',
    session: {
      modalities: ['text'],
      instructions: 'Answer in one sentence.',
      turn_detection: { type: 'server_vad', silence_duration_ms: 400 },
    },
  };
  socket.send(JSON.stringify(untyped));

  const ga: RealtimeClientEvent = {
    type: 'session.update',
    session: {
      modalities: ['audio'],
      voice: 'alloy',
      output_audio_format: 'g711_ulaw',
    },
  };
  socket.send(JSON.stringify(ga));
  return ['response.audio.delta', 'response.text.done'];
}
