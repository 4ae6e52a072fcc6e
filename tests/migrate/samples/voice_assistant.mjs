// Voice assistant written against the Realtime API Preview (openai-node 4.8x beta client).
// A self-written sample in the style of the Preview-era examples: one session with server VAD
// and transcription, a typed user turn, the spoken answer's transcript printed. Every event
// is logged as one JSON line; the last line is a summary.
import OpenAI from 'openai';
import { OpenAIRealtimeWS } from 'openai/beta/realtime/ws';

const client = new OpenAI(); // OPENAI_API_KEY and OPENAI_BASE_URL from the environment
const rt = new OpenAIRealtimeWS({ model: 'gpt-4o-realtime-preview-2024-12-17' }, client);

let audioBytes = 0;
let transcript = '';
let session = null;

rt.socket.on('open', () => {
  rt.send({
    type: 'session.update',
    session: {
      modalities: ['text', 'audio'],
      instructions: 'You are a friendly assistant. Answer in one short sentence.',
      voice: 'shimmer',
      input_audio_format: 'pcm16',
      output_audio_format: 'g711_ulaw',
      input_audio_transcription: { model: 'whisper-1' },
      turn_detection: { type: 'server_vad', silence_duration_ms: 600 },
      temperature: 0.7,
      max_response_output_tokens: 'inf',
    },
  });
  rt.send({
    type: 'conversation.item.create',
    item: { type: 'message', role: 'user', content: [{ type: 'input_text', text: 'Say hello.' }] },
  });
  rt.send({ type: 'response.create' });
});

rt.on('event', (event) => console.log(JSON.stringify(event)));
rt.on('session.updated', (event) => {
  session = event.session;
});
rt.on('response.audio.delta', (event) => {
  audioBytes += Buffer.from(event.delta, 'base64').length;
});
rt.on('response.audio_transcript.delta', (event) => {
  transcript += event.delta;
});
rt.on('error', (err) => {
  console.error(`error: ${err.message}`);
  process.exit(1);
});
rt.on('response.done', () => {
  console.log(JSON.stringify({ summary: { audio_bytes: audioBytes, transcript, session } }));
  rt.close();
});
