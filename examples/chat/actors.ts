/**
 * The chat room: one actor per room keeps the last messages (event-sourced) and publishes
 * each new one on the topic `chat.<room>`, which every open page follows.
 *
 * @module
 */
import { ActorError, defineActor } from "../../mod.ts";

/** A chat message. */
export interface Message {
  /** Position in the room's log. */
  id: number;
  /** Who wrote it. */
  user: string;
  /** What they wrote. */
  text: string;
  /** When, ms since the epoch. */
  at: number;
}

/** Messages a room keeps for pages that open later. */
const KEEP = 50;

/** Room names: they are topic tokens and URL segments. */
export const ROOM_NAME = /^[a-z0-9-]{1,32}$/;

/** The topic a room publishes its messages on. */
export function roomTopic(room: string): string {
  return `chat.${room}`;
}

export const Room = defineActor({
  name: "room",
  initialState: () => ({ messages: [] as Message[] }),
  events: {
    posted: (s, m: Message) => ({ messages: [...s.messages, m].slice(-KEEP) }),
  },
  handlers: {
    post(ctx, input: { user: string; text: string }) {
      const user = typeof input?.user === "string" ? input.user.trim() : "";
      const text = typeof input?.text === "string" ? input.text.trim() : "";
      if (!ROOM_NAME.test(ctx.id)) throw new ActorError("Bad room name", { code: "bad_room" });
      if (user.length < 1 || user.length > 40) {
        throw new ActorError("A name has 1 to 40 characters", { code: "bad_user" });
      }
      if (text.length < 1 || text.length > 500) {
        throw new ActorError("A message has 1 to 500 characters", { code: "bad_text" });
      }
      const message: Message = { id: ctx.seq + 1, user, text, at: Date.now() };
      ctx.emit("posted", message);
      ctx.publish(roomTopic(ctx.id), message); // sent once the event is durable
      return message;
    },
    recent: (ctx) => ctx.state.messages,
  },
});
