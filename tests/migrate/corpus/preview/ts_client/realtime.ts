// Browser/Node client on openai-node's Preview realtime module.
import OpenAI from "openai";
import { OpenAIRealtimeWebSocket } from "openai/beta/realtime/websocket";

interface Transcript {
  text: string;
}

export async function connect(client: OpenAI): Promise<Transcript> {
  const rt = new OpenAIRealtimeWebSocket({ model: "gpt-4o-realtime-preview-2024-12-17" }, client);
  const result: Transcript = { text: "" };
  rt.socket.addEventListener("open", () => {
    rt.send({
      type: "session.update",
      session: { modalities: ["text"], model: "gpt-4o-realtime-preview" },
    });
  });
  rt.on("response.text.delta", (event) => {
    result.text += event.delta;
  });
  rt.on("response.text.done", () => rt.close());
  return result;
}

export async function openAiSessionToken(apiKey: string): Promise<string> {
  const r = await fetch("https://api.openai.com/v1/realtime/sessions", {
    method: "POST",
    headers: { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model: "gpt-4o-realtime-preview", voice: "verse" }),
  });
  const body = await r.json();
  return body.client_secret.value;
}

export async function exchangeSdp(sdp: string, key: string): Promise<string> {
  const baseUrl = "https://api.openai.com/v1/realtime";
  const r = await fetch(`${baseUrl}?model=gpt-4o-realtime-preview`, {
    method: "POST",
    body: sdp,
    headers: { Authorization: `Bearer ${key}`, "Content-Type": "application/sdp" },
  });
  return r.text();
}
