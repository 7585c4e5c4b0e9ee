{{- define "migwatch.labels" -}}
app.kubernetes.io/name: migwatch
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "migwatch.kafkaEnv" -}}
- name: MIGWATCH_KAFKA_BOOTSTRAP
  value: {{ .Values.kafka.bootstrap | quote }}
- name: MIGWATCH_KAFKA_TOPIC_PREFIX
  value: {{ .Values.kafka.topicPrefix | quote }}
- name: MIGWATCH_KAFKA_PARTITIONS
  value: {{ .Values.kafka.partitions | quote }}
{{- end }}

{{- define "migwatch.securityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end }}
